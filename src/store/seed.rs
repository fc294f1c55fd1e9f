//! Reading the whole table in one snapshot, to seed the in-memory state.

use futures_util::{pin_mut, TryStreamExt};
use serde_json::Value;

use super::error::StoreError;
use super::row::{self, Column};

/// Every live object and the resourceVersion counter, read in one REPEATABLE READ
/// snapshot. With `snapshot`, that is the snapshot a replication slot exported when it was
/// created, so the stream continues exactly where the table read ends.
///
/// Rows are streamed and each is handed over as it arrives, so the peak is the caller's
/// objects plus one row, never the whole table twice over: `keep(uid, resourceVersion)`
/// may return an object the caller already holds for exactly that version (a re-seed
/// then shares it instead of building a copy), and otherwise `make` turns the assembled
/// API object into the caller's.
pub async fn load<T>(
    client: &mut tokio_postgres::Client,
    snapshot: Option<&str>,
    keep: impl Fn(&str, i64) -> Option<T>,
    mut make: impl FnMut(Value) -> T,
) -> Result<(Vec<T>, i64), StoreError> {
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
        .query_raw(
            &format!(
                "SELECT {} FROM resources WHERE deleted_at IS NULL ORDER BY kind, namespace, name",
                row::SELECT_COLUMNS
            ),
            std::iter::empty::<i64>(),
        )
        .await
        .map_err(StoreError::from_pg)?;
    pin_mut!(rows);
    let mut objects = Vec::new();
    let bad = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    while let Some(r) = rows.try_next().await.map_err(StoreError::from_pg)? {
        let uid: uuid::Uuid = r.try_get(Column::Uid.index()).map_err(bad)?;
        let rv: i64 = r.try_get(Column::ResourceVersion.index()).map_err(bad)?;
        let obj = match keep(&uid.to_string(), rv) {
            Some(o) => o,
            None => make(row::object_from_row(&r).map_err(bad)?),
        };
        objects.push(obj);
    }
    tx.commit().await.map_err(StoreError::from_pg)?;
    Ok((objects, rv))
}
