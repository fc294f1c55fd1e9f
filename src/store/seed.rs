//! Reading the whole table in one snapshot, to seed the in-memory state.

use serde_json::Value;

use super::error::StoreError;
use super::row;

/// Every live object and the resourceVersion counter, read in one REPEATABLE READ
/// snapshot. With `snapshot`, that is the snapshot a replication slot exported when it was
/// created, so the stream continues exactly where the table read ends.
pub async fn load(
    client: &mut tokio_postgres::Client,
    snapshot: Option<&str>,
) -> Result<(Vec<Value>, i64), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(StoreError::from_pg)?;
    if let Some(name) = snapshot {
        // Snapshot names are server-generated (hex and dashes); refuse anything else
        // rather than quote it into SQL.
        if !name.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(StoreError::Internal(format!(
                "unexpected snapshot name {name:?}"
            )));
        }
        tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{name}'"))
            .await
            .map_err(StoreError::from_pg)?;
    }
    let rv: i64 = tx
        .query_one("SELECT value FROM resource_version_counter", &[])
        .await
        .map_err(StoreError::from_pg)?
        .get(0);
    let rows = tx
        .query(
            &format!(
                "SELECT {} FROM resources WHERE deleted_at IS NULL ORDER BY kind, namespace, name",
                row::SELECT_COLUMNS
            ),
            &[],
        )
        .await
        .map_err(StoreError::from_pg)?;
    let mut objects = Vec::with_capacity(rows.len());
    for r in &rows {
        objects.push(row::object_from_row(r).map_err(|e| StoreError::Internal(e.to_string()))?);
    }
    tx.commit().await.map_err(StoreError::from_pg)?;
    Ok((objects, rv))
}
