//! Fault injection around the replication slot itself (issue 3): invalidation while the
//! server is down, WAL retention while the published table is idle, the slot metrics, and
//! `ark-apiserver slot drop` under a running server. Helpers are in `stream_faults.rs`.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::TestServer;
use crate::stream_faults::{
    agents_path, api_list, cluster_db, create, dedicated_cluster, delete, eventually, patch_prompt,
    readyz, sql_delete, sql_update, summary, table_state, wait_ready, RawInformer, RawWatch,
    Reflector, NS,
};

/// `pg_replication_slots` for one slot: wal_status, active, active_pid and the WAL it retains.
async fn slot_row(
    db: &tokio_postgres::Client,
    slot: &str,
) -> Option<(Option<String>, bool, Option<i32>, Option<i64>)> {
    db.query_opt(
        "SELECT wal_status, active, active_pid, \
         pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
         FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

/// Issue 3, Slot lifecycle: "Invalidated slot (wal_status = 'lost'): drop it and create it
/// again. Treat this as a gap: every open watch gets 410 Expired, and the in-memory state is
/// rebuilt from the table." Acceptance, Slot invalidation: "with a small
/// max_slot_wal_keep_size, generate WAL while the server is down. On start the server
/// recreates the slot, old resourceVersions get 410, and clients recover."
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidated_slot_is_recreated_old_resource_versions_get_410_and_clients_recover() {
    let t0 = Instant::now();
    let cluster = dedicated_cluster(Some(
        "max_slot_wal_keep_size = '1MB'\nwal_keep_size = 0\nmax_wal_size = '32MB'\nmin_wal_size = '32MB'",
    ))
    .await;
    let s1 = TestServer::start_on(cluster_db(&cluster)).await;
    let slot = s1.db.slot_name();
    let (http, base, addr) = (s1.http(), s1.base_url(), s1.addr);
    let db = s1.db.client().await;
    for i in 0..5 {
        create(&http, &base, &format!("a{i}")).await;
    }
    let (_, old_rv) = api_list(&http, &base).await.unwrap();
    let refl = Reflector::start(&base);
    refl.converge(&table_state(&db).await, Duration::from_secs(15))
        .await;
    s1.stop().await;

    // While the server is down: changes to resources, then WAL well past the slot's limit.
    sql_update(&db, "a1", "while down").await;
    sql_delete(&db, "a2").await;
    db.batch_execute("CREATE TABLE scratch (id bigint, pad text)")
        .await
        .unwrap();
    let mut rounds = 0;
    loop {
        rounds += 1;
        db.batch_execute(
            "INSERT INTO scratch SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g; \
             SELECT pg_switch_wal(); CHECKPOINT;",
        )
        .await
        .unwrap();
        let (status, ..) = slot_row(&db, &slot).await.expect("the slot exists");
        if status.as_deref() == Some("lost") {
            break;
        }
        assert!(
            rounds < 20,
            "the slot was never invalidated (wal_status {status:?})"
        );
    }
    eprintln!("slot lost after {rounds} rounds, {:?}", t0.elapsed());
    let want = table_state(&db).await;

    let s2 = TestServer::start_on_with(cluster_db(&cluster), |o| o.bind = addr).await;
    let (status, active, ..) = slot_row(&db, &slot).await.expect("the slot was recreated");
    assert_eq!(status.as_deref(), Some("reserved"));
    assert!(active);
    let (list, _) = api_list(&http, &base).await.unwrap();
    assert_eq!(list, want, "the state was rebuilt from the table");

    // A resourceVersion from before the gap: kube's 410 ERROR event.
    let r = http
        .get(format!(
            "{base}{}?watch=true&resourceVersion={old_rv}",
            agents_path(NS)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let ev: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(ev["object"]["code"], 410, "{ev}");
    assert_eq!(ev["object"]["reason"], "Expired", "{ev}");
    assert!(
        ev["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("too old resource version: {old_rv} (")),
        "{ev}"
    );

    // The reflector (same address, new server) relists and converges, also on later writes.
    refl.converge(&want, Duration::from_secs(20)).await;
    assert!(
        refl.inits.load(Ordering::SeqCst) >= 2,
        "the reflector relisted after the 410"
    );
    patch_prompt(&http, &base, "a0", "after recreation").await;
    create(&http, &base, "a5").await;
    refl.converge(&table_state(&db).await, Duration::from_secs(10))
        .await;
    eprintln!("took {:?}", t0.elapsed());
    drop(refl);
    s2.stop().await;
}

/// Issue 3, Acknowledgement and WAL hygiene: "While the published table is idle, advance the
/// acknowledgement to the server's WAL end from keepalives, so that the slot never pins WAL."
/// Acceptance, Idle publication: "during heavy writes to another table, the WAL retained for
/// ark_cdc stays bounded (under 64 MB)."
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heavy_writes_to_another_table_do_not_pin_wal_for_the_slot() {
    let t0 = Instant::now();
    let cluster = dedicated_cluster(None).await;
    let s = TestServer::start_on(cluster_db(&cluster)).await;
    let slot = s.db.slot_name();
    let (http, base) = (s.http(), s.base_url());
    create(&http, &base, "only-one").await;
    let db = s.db.client().await;
    db.batch_execute("CREATE TABLE scratch (id bigint, pad text)")
        .await
        .unwrap();

    // The slot's unconfirmed and retained WAL, sampled every 100 ms throughout.
    let running = Arc::new(AtomicBool::new(true));
    let series = Arc::new(Mutex::new(Vec::<(Duration, i64, i64)>::new()));
    let monitor = {
        let (running, series, slot) = (running.clone(), series.clone(), slot.clone());
        let mon = s.db.client().await;
        tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                let row = mon
                    .query_one(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, \
                         pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
                         FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .unwrap();
                series
                    .lock()
                    .unwrap()
                    .push((t0.elapsed(), row.get(0), row.get(1)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let start_lsn: String = db
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    // About 10 MB of WAL a round. The CHECKPOINT logs the running-transactions record
    // PostgreSQL needs before it may move a slot's restart_lsn (the bgwriter logs one every
    // 15 s on a busy server); the acknowledgement must then let it move.
    for _ in 0..15 {
        db.batch_execute(
            "INSERT INTO scratch SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g; CHECKPOINT;",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let written: i64 = db
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
            &[&start_lsn],
        )
        .await
        .unwrap()
        .get(0);
    assert!(written > 100 << 20, "the test wrote {written} bytes of WAL");
    // Ends small: the server acknowledges keepalives (every wal_sender_timeout / 2 at most).
    let end = eventually(
        "the slot retains little WAL once writes stop",
        Duration::from_secs(30),
        || async {
            db.batch_execute("CHECKPOINT")
                .await
                .map_err(|e| e.to_string())?;
            match slot_row(&db, &slot).await {
                Some((_, _, _, Some(r))) if r < 16 << 20 => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    running.store(false, Ordering::SeqCst);
    monitor.await.unwrap();
    let series = series.lock().unwrap().clone();
    let max = series.iter().map(|s| s.2).max().unwrap_or(0);
    let trace: Vec<String> = series
        .iter()
        .step_by(5)
        .map(|(t, lag, kept)| {
            format!(
                "{:.1}s: unconfirmed {} MB, retained {} MB",
                t.as_secs_f64(),
                lag >> 20,
                kept >> 20
            )
        })
        .collect();
    eprintln!(
        "wrote {} MB of WAL; the slot retained at most {} MB, {} KB at the end; took {:?}",
        written >> 20,
        max >> 20,
        end >> 10,
        t0.elapsed()
    );
    assert!(
        max < 64 << 20,
        "the slot retained up to {} MB of WAL while {} MB were written:\n{}",
        max >> 20,
        written >> 20,
        trace.join("\n")
    );
    // The stream is still healthy.
    let w = RawWatch::open(&http, &format!("{base}{}?watch=true", agents_path(NS))).await;
    create(&http, &base, "after").await;
    w.wait_for(
        "the watch sees the new agent",
        Duration::from_secs(10),
        |e| summary(e).contains(&("ADDED".into(), "after".into())),
    )
    .await;
    drop(w);
    s.stop().await;
}

/// Value of the first sample whose name and labels start with `prefix`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Issue 3, Metrics: "slot lag in bytes; wal_status, and whether the slot is active; events
/// decoded per kind; open watchers; history size".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_slot_the_stream_and_the_watchers() {
    let s = TestServer::start().await;
    let (http, base) = (s.http(), s.base_url());
    for i in 0..3 {
        create(&http, &base, &format!("m{i}")).await;
    }
    let w = RawWatch::open(&http, &format!("{base}{}?watch=true", agents_path(NS))).await;
    w.wait_for("the initial events", Duration::from_secs(10), |e| {
        e.len() >= 3
    })
    .await;
    patch_prompt(&http, &base, "m0", "changed").await;
    // Gauges are process-wide and sampled per scrape; other tests' servers scrape too, so
    // retry a few times rather than fail on an interleaving.
    let text = eventually(
        "/metrics reports the stream",
        Duration::from_secs(10),
        || async {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let checks = [
                (
                    "ark_cdc_slot_lag_bytes",
                    metric(&text, "ark_cdc_slot_lag_bytes").is_some_and(|v| v >= 0.0),
                ),
                (
                    "ark_cdc_slot_retained_wal_bytes",
                    metric(&text, "ark_cdc_slot_retained_wal_bytes").is_some_and(|v| v >= 0.0),
                ),
                (
                    "wal_status reserved",
                    metric(&text, "ark_cdc_slot_wal_status{status=\"reserved\"}") == Some(1.0),
                ),
                (
                    "wal_status lost 0",
                    metric(&text, "ark_cdc_slot_wal_status{status=\"lost\"}") == Some(0.0),
                ),
                (
                    "ark_cdc_slot_active",
                    metric(&text, "ark_cdc_slot_active") == Some(1.0),
                ),
                (
                    "ark_cdc_events_total Agent",
                    metric(&text, "ark_cdc_events_total{kind=\"Agent\"}").is_some_and(|v| v >= 4.0),
                ),
                (
                    "ark_watch_open_watchers Agent",
                    metric(&text, "ark_watch_open_watchers{kind=\"Agent\"}")
                        .is_some_and(|v| v >= 1.0),
                ),
                (
                    "ark_watch_history_events Agent",
                    metric(&text, "ark_watch_history_events{kind=\"Agent\"}")
                        .is_some_and(|v| v >= 4.0),
                ),
            ];
            match checks.iter().find(|(_, ok)| !ok) {
                None => Ok(text),
                Some((what, _)) => Err(format!("{what} wrong in:\n{text}")),
            }
        },
    )
    .await;
    assert!(
        text.contains("# TYPE ark_cdc_events_total counter"),
        "{text}"
    );
    drop(w);
    s.stop().await;
}

async fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ark-apiserver"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Issue 3, Operator commands: "`ark-apiserver slot drop`: terminates the slot's holder,
/// then drops the slot and the publication", run under a live server; with Slot lifecycle,
/// "Create what is missing" and the gap rule ("every open watch gets 410 Expired, and the
/// in-memory state is rebuilt from the table"). The server is expected to recreate the
/// publication and the slot, end its watches with 410, and serve every later change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slot_drop_under_a_running_server_is_a_gap_the_server_recovers_from() {
    let t0 = Instant::now();
    let s = TestServer::start().await;
    let slot = s.db.slot_name();
    let (http, base) = (s.http(), s.base_url());
    let db = s.db.client().await;
    for i in 0..4 {
        create(&http, &base, &format!("d{i}")).await;
    }
    let refl = Reflector::start(&base);
    let inf = RawInformer::start(http.clone(), base.clone());
    let want = table_state(&db).await;
    refl.converge(&want, Duration::from_secs(15)).await;
    inf.converge(&want, Duration::from_secs(15)).await;
    let (_, active, first_pid, _) = slot_row(&db, &slot).await.unwrap();
    assert!(active);

    let (code, out, err) = run_bin(&[
        "slot",
        "drop",
        "--database-url",
        &s.db.url,
        "--slot-name",
        &slot,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dropped"), "{out}");
    // A change right after the drop, before the server can have a new slot: it must not be lost.
    sql_update(&db, "d1", "right after the drop").await;

    // The server recreates publication and slot, with a new walsender.
    eventually(
        "the server recreates its slot",
        Duration::from_secs(20),
        || async {
            match slot_row(&db, &slot).await {
                Some((Some(st), true, pid, _)) if st == "reserved" && pid != first_pid => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let publication = db
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = 'ark_cdc'",
            &[],
        )
        .await
        .unwrap();
    assert!(publication.is_some(), "the publication was recreated");
    wait_ready(&http, &base, Duration::from_secs(20)).await;

    // Open watches were told about the gap and relisted.
    eventually("the raw watch got 410", Duration::from_secs(10), || async {
        let st = inf.state.lock().unwrap();
        if st.gone >= 1 && st.lists >= 2 {
            Ok(())
        } else {
            Err(format!(
                "410s {}, lists {}, errors {:?}",
                st.gone, st.lists, st.errors
            ))
        }
    })
    .await;
    patch_prompt(&http, &base, "d0", "after recreation").await;
    delete(&http, &base, "d2").await;
    create(&http, &base, "d4").await;
    let want = table_state(&db).await;
    assert_eq!(want.len(), 4, "{want:?}");
    refl.converge(&want, Duration::from_secs(20)).await;
    inf.converge(&want, Duration::from_secs(20)).await;
    assert!(
        refl.inits.load(Ordering::SeqCst) >= 2,
        "the reflector relisted"
    );
    assert_eq!(readyz(&http, &base).await.unwrap().0, 200);
    eprintln!("took {:?}", t0.elapsed());
    drop((refl, inf));
    s.stop().await;
}
