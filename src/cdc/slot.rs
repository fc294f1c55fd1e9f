//! The replication slot and publication: preflight, inspection, creation, invalidation
//! and cleanup. Everything here is SQL against PostgreSQL's catalogs over an ordinary
//! connection; the replication protocol itself is in `stream`.

use tokio_postgres::Client;

use crate::store::error::db_message;

/// The address and port of the server this connection reached (`None` for the address
/// over a Unix socket): with several hosts in the connection string, which one is the
/// primary.
pub async fn server_address(
    c: &tokio_postgres::Client,
) -> Result<Option<(Option<String>, u16)>, String> {
    let row = c
        .query_one("SELECT inet_server_addr()::text, inet_server_port()", &[])
        .await
        .map_err(|e| e.to_string())?;
    let addr: Option<String> = row.get(0);
    let port: Option<i32> = row.get(1);
    Ok(port.map(|p| (addr, p.clamp(0, u16::MAX as i32) as u16)))
}

/// Why the change stream cannot run on this database, each naming the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "wal_level is '{0}', but the watch needs wal_level=logical. Fix: ALTER SYSTEM SET wal_level = logical and restart \
         PostgreSQL; on Amazon RDS/Aurora set rds.logical_replication=1 in the parameter group, on Cloud SQL set the flag \
         cloudsql.logical_decoding=on, on Azure Database for PostgreSQL set wal_level=logical in the server parameters."
    )]
    WalLevel(String),
    #[error(
        "max_replication_slots is {0}: no replication slot can be created. Raise max_replication_slots (e.g. to 10) and \
         restart PostgreSQL; managed services expose it as a server parameter."
    )]
    NoSlots(i32),
    #[error(
        "max_wal_senders is {0}: no replication connection is possible. Raise max_wal_senders (e.g. to 10) and restart \
         PostgreSQL; managed services expose it as a server parameter."
    )]
    NoWalSenders(i32),
    #[error(
        "role {0:?} lacks the REPLICATION attribute needed to read the change stream. Fix: ALTER ROLE {0} REPLICATION \
         (on Amazon RDS: GRANT rds_replication TO {0}; on Cloud SQL: ALTER USER {0} WITH REPLICATION as cloudsqlsuperuser)."
    )]
    NoReplicationPrivilege(String),
    #[error(
        "all {max} replication slots are in use and none is named {slot:?}. Drop an unused slot \
         (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots."
    )]
    SlotsExhausted { max: i32, slot: String },
    #[error(
        "replication slot {slot:?} belongs to database {database:?}, not to this server's database {ours:?}. Slot names \
         are cluster-wide: give this server a slot of its own with --slot-name (ARK_SLOT_NAME)."
    )]
    SlotOfAnotherDatabase {
        slot: String,
        database: String,
        ours: String,
    },
    #[error("{0}")]
    Db(String),
}

fn db(e: tokio_postgres::Error) -> PreflightError {
    PreflightError::Db(db_message(&e))
}

/// Checks the settings and privileges logical replication needs.
pub async fn preflight(client: &Client, slot: &str) -> Result<(), PreflightError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int, \
             current_setting('max_wal_senders')::int, current_user::text, \
             coalesce((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), false), \
             to_regrole('rds_replication') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db)?;
    let wal_level: String = row.get(0);
    let max_slots: i32 = row.get(1);
    let max_senders: i32 = row.get(2);
    let user: String = row.get(3);
    let mut replication: bool = row.get(4);
    // Amazon RDS grants replication through a role instead of the attribute.
    if !replication && row.get::<_, bool>(5) {
        replication = client
            .query_one(
                "SELECT pg_has_role(current_user, 'rds_replication', 'member')",
                &[],
            )
            .await
            .map_err(db)?
            .get(0);
    }
    if wal_level != "logical" {
        return Err(PreflightError::WalLevel(wal_level));
    }
    if max_slots < 1 {
        return Err(PreflightError::NoSlots(max_slots));
    }
    if max_senders < 1 {
        return Err(PreflightError::NoWalSenders(max_senders));
    }
    if !replication {
        return Err(PreflightError::NoReplicationPrivilege(user));
    }
    let used: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name <> $1",
            &[&slot],
        )
        .await
        .map_err(db)?
        .get(0);
    let ours = inspect(client, slot)
        .await
        .map_err(|e| PreflightError::Db(e.to_string()))?
        .is_some();
    if !ours && used >= max_slots as i64 {
        return Err(PreflightError::SlotsExhausted {
            max: max_slots,
            slot: slot.to_string(),
        });
    }
    Ok(())
}

/// Creates the publication if it is missing. (The first migration creates `ark_cdc`;
/// this covers a custom `--publication-name`.)
pub async fn ensure_publication(client: &Client, publication: &str) -> Result<(), String> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| db_message(&e))?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE resources",
                quote_ident(publication)
            ))
            .await
            .map_err(|e| db_message(&e))?;
    }
    Ok(())
}

/// The slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotInfo {
    pub name: String,
    pub plugin: Option<String>,
    pub slot_type: String,
    pub active: bool,
    pub active_pid: Option<i32>,
    /// reserved, extended, unreserved or lost (NULL before the slot reserved WAL).
    pub wal_status: Option<String>,
    pub restart_lsn: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    /// WAL the slot holds back, in bytes (current WAL position minus restart_lsn).
    pub retained_bytes: Option<i64>,
    /// How far the consumer is behind, in bytes (current WAL position minus confirmed_flush_lsn).
    pub lag_bytes: Option<i64>,
    /// PostgreSQL 16+: why the slot was invalidated, if it was.
    pub conflicting: Option<bool>,
    /// The database the slot decodes.
    pub database: Option<String>,
}

impl SlotInfo {
    /// A slot PostgreSQL can no longer serve: its WAL is gone or it was invalidated.
    pub fn is_invalidated(&self) -> bool {
        self.wal_status.as_deref() == Some("lost") || self.conflicting == Some(true)
    }

    /// The slot claims a position the server's WAL has not reached: it came back with a
    /// point-in-time or file-system restore of a later state. Decoding from it would skip
    /// every change written below that position after the restore.
    pub fn is_ahead_of_wal(&self) -> bool {
        self.lag_bytes.is_some_and(|lag| lag < 0)
    }

    pub fn is_usable_logical_pgoutput(&self) -> bool {
        self.slot_type == "logical" && self.plugin.as_deref() == Some("pgoutput")
    }
}

/// The walsender that holds `slot` if it is the one named `application_name` (this
/// replica's) on the server `client` reaches, else `None`.
pub async fn our_walsender(
    client: &Client,
    slot: &str,
    application_name: &str,
) -> Result<Option<crate::cdc::status::WalSender>, String> {
    let row = client
        .query_opt(
            "SELECT s.active_pid, \
                    (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8 \
             FROM pg_replication_slots s \
             JOIN pg_stat_replication w ON w.pid = s.active_pid \
             WHERE s.slot_name = $1 AND s.active AND w.application_name = $2",
            &[&slot, &application_name],
        )
        .await
        .map_err(|e| db_message(&e))?;
    Ok(row.and_then(|r| {
        Some(crate::cdc::status::WalSender {
            pid: r.get::<_, Option<i32>>(0)?,
            server_started_us: r.get(1),
        })
    }))
}

pub async fn inspect(client: &Client, slot: &str) -> Result<Option<SlotInfo>, String> {
    let conflicting = if server_version(client).await? >= 160000 {
        "conflicting"
    } else {
        "NULL::boolean"
    };
    let sql = format!(
        "SELECT slot_name::text, plugin::text, slot_type, active, active_pid, wal_status, restart_lsn::text, \
         confirmed_flush_lsn::text, \
         CASE WHEN restart_lsn IS NULL THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END, \
         CASE WHEN confirmed_flush_lsn IS NULL THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint END, \
         {conflicting}, database::text \
         FROM pg_replication_slots WHERE slot_name = $1"
    );
    let row = client
        .query_opt(&sql, &[&slot])
        .await
        .map_err(|e| db_message(&e))?;
    Ok(row.map(|r| SlotInfo {
        name: r.get(0),
        plugin: r.get(1),
        slot_type: r.get(2),
        active: r.get(3),
        active_pid: r.get(4),
        wal_status: r.get(5),
        restart_lsn: r.get(6),
        confirmed_flush_lsn: r.get(7),
        retained_bytes: r.get(8),
        lag_bytes: r.get(9),
        conflicting: r.get(10),
        database: r.get(11),
    }))
}

async fn server_version(client: &Client) -> Result<i32, String> {
    client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| db_message(&e))
}

/// Drops the slot. With `terminate`, first ends the session holding it (the cleanup after
/// an uninstall must not be blocked by a replica that is still running).
pub async fn drop_slot(client: &Client, slot: &str, terminate: bool) -> Result<bool, String> {
    let Some(info) = inspect(client, slot).await? else {
        return Ok(false);
    };
    if let (true, Some(pid)) = (terminate, info.active_pid) {
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .map_err(|e| db_message(&e))?;
        // The walsender exits asynchronously; wait until the slot is released.
        for _ in 0..100 {
            match inspect(client, slot).await? {
                Some(i) if i.active => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                _ => break,
            }
        }
    }
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(|e| db_message(&e))?;
    Ok(true)
}

/// Moves the slot's confirmed position forward to `lsn` (never back) once no session holds
/// it: the last position a stopping server applied, which its replication client does not
/// report before it ends the stream. Returns whether the slot moved.
pub async fn advance(
    client: &Client,
    slot: &str,
    lsn: crate::pgoutput::Lsn,
) -> Result<bool, String> {
    // The walsender lets go of the slot a moment after the stream ends.
    for _ in 0..50 {
        match inspect(client, slot).await? {
            None => return Ok(false),
            Some(i) if i.active => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Some(i) => {
                let confirmed = i
                    .confirmed_flush_lsn
                    .as_deref()
                    .and_then(|l| l.parse::<crate::pgoutput::Lsn>().ok())
                    .unwrap_or(crate::pgoutput::Lsn(0));
                if confirmed >= lsn {
                    return Ok(false);
                }
                client
                    .execute(
                        "SELECT pg_replication_slot_advance($1, ($2::text)::pg_lsn)",
                        &[&slot, &lsn.to_string()],
                    )
                    .await
                    .map_err(|e| db_message(&e))?;
                return Ok(true);
            }
        }
    }
    Err(format!(
        "replication slot {slot:?} is still held by a session"
    ))
}

/// Drops the publication if it exists.
pub async fn drop_publication(client: &Client, publication: &str) -> Result<bool, String> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| db_message(&e))?
        .is_some();
    if exists {
        client
            .batch_execute(&format!("DROP PUBLICATION {}", quote_ident(publication)))
            .await
            .map_err(|e| db_message(&e))?;
    }
    Ok(exists)
}

/// Double-quotes an identifier as PostgreSQL's quote_ident does.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Slot names are restricted by PostgreSQL to lower-case letters, digits and underscores.
pub fn validate_slot_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "invalid slot name {name:?}: replication slot names may contain only lower-case letters, digits and underscores (at most 63)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_postgres_rules() {
        assert!(validate_slot_name("ark_cdc").is_ok());
        assert!(validate_slot_name("Ark-CDC").is_err());
        assert!(validate_slot_name("").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("ark_cdc"), "\"ark_cdc\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    fn slot_info() -> SlotInfo {
        SlotInfo {
            name: "ark_cdc".into(),
            plugin: Some("pgoutput".into()),
            slot_type: "logical".into(),
            active: false,
            active_pid: None,
            wal_status: Some("reserved".into()),
            restart_lsn: Some("0/1000".into()),
            confirmed_flush_lsn: Some("0/2000".into()),
            retained_bytes: Some(0),
            lag_bytes: Some(0),
            conflicting: None,
            database: Some("ark".into()),
        }
    }

    #[test]
    fn a_lost_slot_is_invalidated() {
        let mut s = slot_info();
        assert!(!s.is_invalidated());
        s.wal_status = Some("lost".into());
        assert!(s.is_invalidated());
    }

    #[test]
    fn a_slot_whose_position_the_wal_has_not_reached_is_ahead_of_it() {
        let mut s = slot_info();
        assert!(!s.is_ahead_of_wal(), "caught up is not ahead");
        s.lag_bytes = Some(-4096);
        assert!(
            s.is_ahead_of_wal(),
            "restored WAL behind the slot's position"
        );
    }
}
