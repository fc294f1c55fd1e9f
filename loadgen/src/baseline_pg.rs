//! Baselines measured directly on PostgreSQL, with nothing of the server in between:
//!
//! - [`raw_writes`]: the ceiling for write throughput. Plain autocommit INSERTs and UPDATEs
//!   on a table with no triggers, so no resourceVersion counter and no group commit: what
//!   the database itself does at a given number of connections.
//! - [`raw_decoding`]: the floor for watch latency. A bare logical replication consumer
//!   (pgwire-replication and the crate's own pgoutput decoder) timing each row from its
//!   INSERT to the arrival of its Insert message: what the change stream costs before the
//!   server decodes, applies and fans anything out.
//!
//! Both run on the database the server uses, beside it, and touch only their own objects
//! (`bench_raw_*` tables, the `bench_raw_pub` publication, the `bench_raw_slot` slot).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ark_apiserver::pgoutput::{Decoder, Message, ProtocolVersion, RelationCache, TupleValue};
use ark_apiserver::store::error::db_message;
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use tokio::sync::{oneshot, watch};
use tokio_postgres::{Client, NoTls};

use crate::stamps::{pair_from_writes, WriteStamps};
use crate::stats::{closed_loop, open_loop_n, LatencyPair, Samples};

/// The table, publication and slot of [`raw_decoding`], all its own.
const DECODING_TABLE: &str = "bench_raw_decoding";
const PUBLICATION: &str = "bench_raw_pub";
const SLOT: &str = "bench_raw_slot";
const APPLICATION_NAME: &str = "ark-loadgen-raw-decoding";

/// Writer connections of [`raw_decoding`]. INSERTs are issued on a schedule, and one
/// connection runs one statement at a time: a few connections keep a slow commit from
/// delaying the next row's INSERT, which would count against the stream.
const DECODING_WRITERS: usize = 8;
/// Outstanding INSERTs beyond which the open loop reports the rate as not sustained.
const MAX_IN_FLIGHT: usize = 1024;
/// How long the consumer may take, after the last write, to deliver everything.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Raw INSERT of `values.len()` rows (each value is a JSON document, stored as jsonb, keyed
/// by a unique name) into a plain table `bench_raw_<label>` created fresh (dropped if it
/// exists) with no triggers, at `concurrency` connections, one autocommit statement per
/// row; then UPDATE of the same rows (the same document with one field, `benchUpdate`,
/// added or changed) at the same concurrency. Returns (insert, update) samples.
///
/// Method: `concurrency` connections, each with both statements prepared beforehand so
/// every operation is one round trip (Bind/Execute/Sync), driven by
/// [`closed_loop`] with one worker per connection. Documents are sent as text and cast to
/// jsonb by the server, so the server parses each one as it would any client's. The table
/// has the primary key index on `name` and nothing else. Operation errors are counted in
/// the samples; setup errors are returned. The table is left in place for inspection; the
/// next run with the same label drops it.
pub async fn raw_writes(
    db_url: &str,
    label: &str,
    values: &[String],
    concurrency: usize,
) -> Result<(Samples, Samples), String> {
    let table = raw_table_name(label)?;
    // Built before anything is timed: the measured operation is the database's work only.
    let updated = values
        .iter()
        .enumerate()
        .map(|(i, v)| changed_doc(v).map_err(|e| format!("raw writes: value {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let admin = connect(db_url).await?;
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (name text PRIMARY KEY, doc jsonb NOT NULL)"
        ))
        .await
        .map_err(|e| format!("raw writes: creating {table}: {}", db_message(&e)))?;

    let pool = Pool::open(db_url, concurrency.max(1), &table)
        .await
        .map_err(|e| format!("raw writes: {e}"))?;
    let names: Arc<Vec<String>> =
        Arc::new((0..values.len()).map(|i| format!("bench-{i}")).collect());
    let inserts = pool.run(Statement::Insert, &names, values.to_vec()).await;
    let updates = pool.run(Statement::Update, &names, updated).await;
    Ok((inserts, updates))
}

/// The floor for watch latency: a bare pgwire-replication consumer (its own publication
/// `bench_raw_pub` on its own table `bench_raw_decoding`, and its own logical slot
/// `bench_raw_slot`, pgoutput protocol v1, binary values as the server asks for) while
/// INSERTs of `value` run at `rate`/s for `n` rows. For each row: latency from the INSERT's
/// acknowledgement to the arrival of its Insert message (`from_ack`), and from the start of
/// the INSERT request (`from_start`).
///
/// Method:
/// - The slot is TEMPORARY, created on the replication session itself: PostgreSQL drops it
///   when the session ends, even if this process dies, so it can never be left pinning WAL.
///   The table and publication are created fresh and dropped at the end.
/// - Rows are keyed by `id bigint` = the row's index, read from each Insert message with
///   the crate's sans-IO decoder (`ark_apiserver::pgoutput`) and its relation cache.
/// - The consumer acknowledges as it goes: each commit's end, and the keepalive's WAL end
///   (or a logical message's position) while no transaction is open, as the server does.
/// - A warm-up row is sent and received before timing, so the walsender's first-use work
///   (relation cache, catalog lookups) is not charged to the first measured row.
/// - INSERTs are scheduled by [`open_loop`] over [`DECODING_WRITERS`] connections, one
///   autocommit statement each. A row acknowledged but not delivered within 10 s of the
///   last write is an error. The samples' `elapsed` is the write phase's wall time.
pub async fn raw_decoding(
    db_url: &str,
    rate: f64,
    n: usize,
    value: &str,
) -> Result<LatencyPair, String> {
    if !(rate.is_finite() && rate > 0.0) || n == 0 {
        return Err(format!(
            "raw decoding: needs a positive rate and row count (got {rate}/s, {n} rows)"
        ));
    }
    let admin = connect(db_url).await?;
    prepare_decoding(&admin).await?;
    let measured = measure_decoding(db_url, rate, n, value).await;
    // Clean up whatever happened; a measurement error is the more useful one to report.
    let cleaned = cleanup_decoding(&admin).await;
    let pair = measured?;
    cleaned?;
    Ok(pair)
}

/// Connects with plain TCP (the baselines run beside a local database) and drives the
/// connection in the background.
async fn connect(db_url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(db_url, NoTls).await.map_err(|e| {
        format!(
            "connecting to PostgreSQL for a baseline: {}",
            db_message(&e)
        )
    })?;
    tokio::spawn(async move {
        // A failure surfaces as an error on the client's next statement.
        let _ = conn.await;
    });
    Ok(client)
}

/// `bench_raw_<label>`, refusing labels that are not plain lowercase identifiers (the name
/// is spliced into SQL).
fn raw_table_name(label: &str) -> Result<String, String> {
    let ok = !label.is_empty()
        && label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(format!("bench_raw_{label}"))
    } else {
        Err(format!(
            "raw writes: label {label:?} must be 1-40 characters of a-z, 0-9 and _"
        ))
    }
}

/// The document with one field changed: top-level `benchUpdate` set (or incremented).
fn changed_doc(doc: &str) -> Result<String, String> {
    let mut v: serde_json::Value =
        serde_json::from_str(doc).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    let next = obj
        .get("benchUpdate")
        .and_then(|x| x.as_u64())
        .unwrap_or(0)
        .saturating_add(1);
    obj.insert("benchUpdate".into(), next.into());
    serde_json::to_string(&v).map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
enum Statement {
    Insert,
    Update,
}

/// One connection of [`raw_writes`] with its statements prepared.
struct Writer {
    client: Client,
    insert: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
}

/// Exactly as many connections as [`closed_loop`] has workers: a worker takes one, runs its
/// statement, and gives it back, so each statement runs alone on its connection.
struct Pool {
    size: usize,
    idle: Mutex<Vec<Writer>>,
}

impl Pool {
    async fn open(db_url: &str, size: usize, table: &str) -> Result<Arc<Pool>, String> {
        let insert = format!("INSERT INTO {table} (name, doc) VALUES ($1, $2::text::jsonb)");
        let update = format!("UPDATE {table} SET doc = $2::text::jsonb WHERE name = $1");
        let idle = futures_util::future::try_join_all((0..size).map(|_| async {
            let client = connect(db_url).await?;
            let insert = prepare(&client, &insert).await?;
            let update = prepare(&client, &update).await?;
            Ok::<_, String>(Writer {
                client,
                insert,
                update,
            })
        }))
        .await?;
        Ok(Arc::new(Pool {
            size,
            idle: Mutex::new(idle),
        }))
    }

    /// Runs `which` once per row (`names[i]`, `docs[i]`) at the pool's concurrency.
    async fn run(
        self: &Arc<Self>,
        which: Statement,
        names: &Arc<Vec<String>>,
        docs: Vec<String>,
    ) -> Samples {
        let (pool, names, docs) = (Arc::clone(self), Arc::clone(names), Arc::new(docs));
        closed_loop(self.size, docs.len(), move |i| {
            let (pool, names, docs) = (Arc::clone(&pool), Arc::clone(&names), Arc::clone(&docs));
            async move {
                // A poisoned lock still holds a valid list: nothing panics while holding it.
                let w = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let w = w.ok_or("no idle connection (more workers than connections)")?;
                let (stmt, what) = match which {
                    Statement::Insert => (&w.insert, "INSERT"),
                    Statement::Update => (&w.update, "UPDATE"),
                };
                let r = w.client.execute(stmt, &[&names[i], &docs[i]]).await;
                pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(w);
                match r {
                    Ok(1) => Ok(()),
                    Ok(k) => Err(format!("{what} affected {k} rows, expected 1")),
                    Err(e) => Err(format!("{what}: {}", db_message(&e))),
                }
            }
        })
        .await
    }
}

async fn prepare(client: &Client, sql: &str) -> Result<tokio_postgres::Statement, String> {
    client
        .prepare(sql)
        .await
        .map_err(|e| format!("preparing {sql:?}: {}", db_message(&e)))
}

/// Checks logical decoding is possible, then creates the table and publication fresh.
async fn prepare_decoding(admin: &Client) -> Result<(), String> {
    let err =
        |what: &str, e: tokio_postgres::Error| format!("raw decoding: {what}: {}", db_message(&e));
    let wal_level: String = admin
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(|e| err("reading wal_level", e))?
        .get(0);
    if wal_level != "logical" {
        return Err(format!(
            "raw decoding: wal_level is '{wal_level}'; it needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)"
        ));
    }
    // Ours are temporary and vanish with their session. An active slot of this name is
    // another run's (on this database, its publication and table too): leave all of it
    // alone. An idle one was left by something else: drop it.
    let holder = admin
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active",
            &[&SLOT],
        )
        .await
        .map_err(|e| err("inspecting replication slots", e))?;
    if let Some(pid) = holder.and_then(|r| r.get::<_, Option<i32>>(0)) {
        return Err(format!(
            "raw decoding: slot {SLOT} is in use by pid {pid}: is another ark-loadgen running on this database?"
        ));
    }
    admin
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
            &[&SLOT],
        )
        .await
        .map_err(|e| err("dropping a leftover slot", e))?;
    admin
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS {DECODING_TABLE}; \
             CREATE TABLE {DECODING_TABLE} (id bigint PRIMARY KEY, doc jsonb NOT NULL); \
             CREATE PUBLICATION {PUBLICATION} FOR TABLE {DECODING_TABLE}"
        ))
        .await
        .map_err(|e| err("creating the table and publication", e))
}

/// Waits for the temporary slot to go with its session, then drops the publication and
/// table.
async fn cleanup_decoding(admin: &Client) -> Result<(), String> {
    let err = |what: &str, e: tokio_postgres::Error| {
        format!("raw decoding cleanup: {what}: {}", db_message(&e))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let present = admin
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&SLOT],
            )
            .await
            .map_err(|e| err("inspecting replication slots", e))?
            .is_some();
        if !present {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "raw decoding cleanup: slot {SLOT} still exists 5 s after its session was stopped; \
                 drop it with SELECT pg_drop_replication_slot('{SLOT}') once inactive"
            ));
        }
        // The walsender exits asynchronously after CopyDone: poll gently.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS {DECODING_TABLE}"
        ))
        .await
        .map_err(|e| err("dropping the publication and table", e))
}

/// The replication session's settings, from the same URL as the SQL connections.
fn replication_config(db_url: &str) -> Result<ReplicationConfig, String> {
    let pg: tokio_postgres::Config = db_url
        .parse()
        .map_err(|e| format!("raw decoding: parsing the database URL: {e}"))?;
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        // pgwire-replication reads a host starting with '/' as a socket directory, as libpq.
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let user = pg.get_user().unwrap_or("postgres");
    let mut rc = ReplicationConfig::new(
        host,
        user,
        String::from_utf8_lossy(pg.get_password().unwrap_or_default()).into_owned(),
        pg.get_dbname().unwrap_or(user),
        SLOT,
        PUBLICATION,
    );
    rc.port = pg.get_ports().first().copied().unwrap_or(5432);
    rc.tls = TlsConfig::disabled();
    // As the server's stream: binary values, a status update at most every second.
    rc.binary = true;
    rc.status_interval = Duration::from_secs(1);
    rc.idle_wakeup_interval = Duration::from_secs(5);
    rc.application_name = Some(APPLICATION_NAME.into());
    Ok(rc)
}

async fn measure_decoding(
    db_url: &str,
    rate: f64,
    n: usize,
    value: &str,
) -> Result<LatencyPair, String> {
    let wire =
        |what: &str, e: pgwire_replication::PgWireError| format!("raw decoding: {what}: {e}");
    let mut repl = ReplicationClient::connect_gated(replication_config(db_url)?)
        .await
        .map_err(|e| wire("connecting for replication", e))?;
    repl.simple_query(&format!(
        "CREATE_REPLICATION_SLOT {SLOT} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT"
    ))
    .await
    .map_err(|e| wire("creating the temporary slot", e))?;
    repl.start()
        .await
        .map_err(|e| wire("starting replication", e))?;
    tokio::time::timeout(Duration::from_secs(10), repl.wait_started())
        .await
        .map_err(|_| "raw decoding: START_REPLICATION not accepted within 10 s".to_string())?
        .map_err(|e| wire("starting replication", e))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (warm_tx, warm_rx) = oneshot::channel();
    let mut consumer = tokio::spawn(consume(repl, n, stop_rx, warm_tx));

    let mut writers = Vec::with_capacity(DECODING_WRITERS);
    for _ in 0..DECODING_WRITERS {
        let client = connect(db_url).await?;
        let stmt = prepare(
            &client,
            &format!("INSERT INTO {DECODING_TABLE} (id, doc) VALUES ($1, $2::text::jsonb)"),
        )
        .await
        .map_err(|e| format!("raw decoding: {e}"))?;
        writers.push((client, stmt));
    }
    let value = value.to_string();

    // Warm-up row, id -1, outside the measured range.
    let (c, stmt) = &writers[0];
    c.execute(stmt, &[&-1i64, &value])
        .await
        .map_err(|e| format!("raw decoding: warm-up INSERT: {}", db_message(&e)))?;
    match tokio::time::timeout(EVENT_TIMEOUT, warm_rx).await {
        Ok(Ok(())) => {}
        // The consumer ended (its error is below) or never saw the row.
        Ok(Err(_)) | Err(_) => {
            let _ = stop_tx.send(true);
            let why = match consumer.await {
                Ok(Err(e)) => e,
                _ => "the warm-up row was not delivered within 10 s".into(),
            };
            return Err(format!("raw decoding: {why}"));
        }
    }

    let stamps = Arc::new(WriteStamps::new(n));
    let run = Arc::new((writers, Arc::clone(&stamps), value));
    let op = move |i: usize| {
        let run = Arc::clone(&run);
        async move {
            let (writers, stamps, value) = &*run;
            let Some((client, stmt)) = writers.get(i % DECODING_WRITERS) else {
                return Ok(());
            };
            stamps.started(i);
            client
                .execute(stmt, &[&(i as i64), value])
                .await
                .map_err(|e| format!("INSERT: {}", db_message(&e)))?;
            stamps.acked(i);
            Ok(())
        }
    };
    let writes = open_loop_n(rate, n, MAX_IN_FLIGHT, op).await;

    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let joined = match tokio::time::timeout_at(deadline, &mut consumer).await {
        Ok(j) => j,
        Err(_) => {
            let _ = stop_tx.send(true);
            consumer.await
        }
    };
    let arrivals = joined.map_err(|e| format!("raw decoding: consumer task failed: {e}"))??;
    let missing = stamps.missing(&arrivals);
    if missing > 0 {
        return Err(format!(
            "raw decoding: {missing} of {n} acknowledged rows did not arrive within {} s of the last write",
            EVENT_TIMEOUT.as_secs()
        ));
    }
    let mut pair = pair_from_writes(&writes);
    stamps.add_latencies(&arrivals, &mut pair);
    Ok(pair)
}

/// The consumer: receives until every row `0..n` arrived or `stop` is set; returns each
/// row's arrival time. The session is stopped gracefully on the way out, which ends the
/// walsender and with it the temporary slot.
async fn consume(
    mut repl: ReplicationClient,
    n: usize,
    mut stop: watch::Receiver<bool>,
    warm: oneshot::Sender<()>,
) -> Result<Vec<Option<Instant>>, String> {
    let mut warm = Some(warm);
    let mut arrivals: Vec<Option<Instant>> = vec![None; n];
    let mut seen = 0usize;
    let mut decoder = Decoder::new(ProtocolVersion::V1);
    let mut relations = RelationCache::new();
    let mut in_txn = false;
    let outcome: Result<(), String> = loop {
        if seen == n {
            break Ok(());
        }
        let ev = tokio::select! {
            // Set, or the measuring side is gone: either way, stop.
            _ = stop.changed() => break Ok(()),
            ev = repl.recv() => ev,
        };
        let arrived = Instant::now();
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => break Err("the replication stream ended".into()),
            Err(e) => break Err(format!("the replication stream failed: {e}")),
        };
        match ev {
            ReplicationEvent::Begin { .. } => in_txn = true,
            ReplicationEvent::XLogData { data, .. } => match decoder.decode(data) {
                Ok(Message::Relation(r)) => {
                    relations.insert(r);
                }
                Ok(Message::Insert(ins)) => match row_id(&relations, &ins) {
                    Ok(-1) => {
                        if let Some(w) = warm.take() {
                            let _ = w.send(());
                        }
                    }
                    Ok(id) => {
                        let slot = usize::try_from(id).ok().and_then(|i| arrivals.get_mut(i));
                        if let Some(slot @ None) = slot {
                            *slot = Some(arrived);
                            seen += 1;
                        }
                    }
                    Err(e) => break Err(e),
                },
                Ok(_) => {}
                Err(e) => break Err(format!("cannot decode the replication stream: {e}")),
            },
            ReplicationEvent::Commit { end_lsn, .. } => {
                in_txn = false;
                repl.update_applied_lsn(end_lsn);
            }
            // Nothing in flight: everything up to here is consumed, so the slot may advance
            // past WAL written for other tables (the server's, during the run).
            ReplicationEvent::KeepAlive { wal_end, .. } if !in_txn => {
                repl.update_applied_lsn(wal_end)
            }
            ReplicationEvent::Message {
                lsn,
                transactional: false,
                ..
            } if !in_txn => repl.update_applied_lsn(lsn),
            ReplicationEvent::StoppedAt { .. } => {
                break Err("the replication stream stopped".into())
            }
            _ => {}
        }
    };
    // Whether the stop was clean does not matter to the figures; that the slot is gone is
    // checked by the cleanup, which drops it if it outlived the session.
    let _ = tokio::time::timeout(Duration::from_secs(5), repl.shutdown()).await;
    outcome.map(|()| arrivals)
}

/// The `id` of an inserted row of the decoding table, from its Insert message. Binary
/// (the session asks for it) or text, whichever the server sent.
fn row_id(relations: &RelationCache, ins: &ark_apiserver::pgoutput::Insert) -> Result<i64, String> {
    let named = relations
        .named(ins.relation_id, &ins.new)
        .map_err(|e| format!("an Insert message does not match its relation: {e}"))?;
    let value = named
        .iter()
        .find(|c| c.name() == "id")
        .map(|c| c.value)
        .ok_or("an Insert message of the decoding table has no id column")?;
    match value {
        TupleValue::Binary(b) => <[u8; 8]>::try_from(b.as_ref())
            .map(i64::from_be_bytes)
            .map_err(|_| format!("id is {} bytes in binary, expected 8", b.len())),
        TupleValue::Text(_) => value
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("id {value:?} is not an integer")),
        other => Err(format!("id is {other:?}, expected a value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(i: usize) -> String {
        let spec = r#"{"input":"What is the weather like today?","targets":[{"type":"agent","name":"a"}]}"#;
        format!(
            r#"{{"apiVersion":"ark.mckinsey.com/v1alpha1","kind":"Query","metadata":{{"name":"q-{i}"}},"spec":{spec}}}"#
        )
    }

    #[test]
    fn labels_and_documents() {
        assert_eq!(raw_table_name("c64").as_deref(), Ok("bench_raw_c64"));
        assert!(raw_table_name("x; DROP TABLE resources").is_err());
        assert!(raw_table_name("").is_err());
        let once = changed_doc(r#"{"a":1}"#).expect("an object");
        assert_eq!(once, r#"{"a":1,"benchUpdate":1}"#);
        assert!(changed_doc(&once).is_ok_and(|d| d.contains(r#""benchUpdate":2"#)));
        assert!(changed_doc("[1]").is_err());
    }

    /// Both baselines against a real, durable PostgreSQL (fsync on, as in a benchmark run).
    /// Prints the figures; asserts that every operation succeeded, every row arrived, and
    /// nothing (slot, publication, decoding table) is left behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_baselines_on_a_real_database() {
        let cluster = ark_apiserver::embedded::Cluster::start(None, false).expect("PostgreSQL");
        let url = cluster.url("postgres");
        let values: Vec<String> = (0..1000).map(doc).collect();
        for conc in [1usize, 20, 64] {
            let (ins, upd) = raw_writes(&url, &format!("t{conc}"), &values, conc)
                .await
                .expect("raw writes");
            let (i, u) = (ins.summary(), upd.summary());
            println!(
                "raw INSERT c{conc}: {:.0}/s p50 {:?} p99 {:?} | UPDATE: {:.0}/s p50 {:?} p99 {:?}",
                i.ops_per_sec, i.p50, i.p99, u.ops_per_sec, u.p50, u.p99
            );
            let counts = (i.count, i.errors, u.count, u.errors);
            assert_eq!(
                counts,
                (1000, 0, 1000, 0),
                "{:?} {:?}",
                ins.first_errors,
                upd.first_errors
            );
        }
        let p = raw_decoding(&url, 1000.0, 2000, &doc(0))
            .await
            .expect("raw decoding");
        let (a, s) = (p.from_ack.summary(), p.from_start.summary());
        println!(
            "raw decoding 1000/s: from ack p50 {:?} p99 {:?} max {:?} | from start p50 {:?} p99 {:?}",
            a.p50, a.p99, a.max, s.p50, s.p99
        );
        assert_eq!(
            (a.count, a.errors),
            (2000, 0),
            "{:?}",
            p.from_ack.first_errors
        );
        let left: i64 = connect(&url)
            .await
            .expect("connect")
            .query_one(
                "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication) \
                 + (SELECT count(*) FROM pg_class WHERE relname = 'bench_raw_decoding')",
                &[],
            )
            .await
            .expect("residue query")
            .get(0);
        assert_eq!(left, 0);
        raw_decoding(&url, 500.0, 50, &doc(1))
            .await
            .expect("a second run");
    }
}
