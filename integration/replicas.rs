//! Several replicas as separate processes on one PostgreSQL: one consumes the slot, the
//! others follow it over the internal stream and serve every verb from their own memory;
//! when the leader is killed a follower takes the slot over and open watches on it go on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::TestDb;
use crate::startup_failures::{http, Serve};
use crate::stream_faults::{agent, agents_path, eventually, wait_ready};

const NS: &str = "replicas";

/// Sends `signal` (`-KILL`, `-STOP`, ...) to a server process.
pub(crate) fn kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

async fn replica(db: &TestDb, id: &str) -> Serve {
    replica_with(db, id, &[]).await
}

async fn replica_with(db: &TestDb, id: &str, extra: &[&str]) -> Serve {
    let slot = db.slot_name();
    let mut args = vec!["--slot-name", &slot, "--replica-id", id];
    if !extra.contains(&"--replication-timeout") {
        args.extend_from_slice(&["--replication-timeout", "3s"]);
    }
    args.extend_from_slice(extra);
    let s = Serve::start(&db.url, &args);
    wait_ready(&http(), &s.base, Duration::from_secs(60)).await;
    s
}

/// The application names of the walsenders streaming from the slot.
async fn slot_consumers(db: &TestDb) -> Vec<String> {
    let c = db.client().await;
    c.query(
        "SELECT w.application_name FROM pg_replication_slots s \
         JOIN pg_stat_replication w ON w.pid = s.active_pid WHERE s.slot_name = $1",
        &[&db.slot_name()],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Waits until `replica` alone consumes the slot.
async fn wait_for_holder(db: &TestDb, replica: &str, within: Duration) {
    let want = format!("ark-apiserver-cdc/{replica}");
    eventually(&format!("{replica} holds the slot"), within, || async {
        let consumers = slot_consumers(db).await;
        assert!(consumers.len() <= 1, "two consumers: {consumers:?}");
        match consumers.as_slice() {
            [one] if *one == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn create(base: &str, name: &str) -> Value {
    let r = http()
        .post(format!("{base}{}", agents_path(NS)))
        .json(&agent(name, "v1"))
        .send()
        .await
        .unwrap();
    let code = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(code, 201, "create {name}: {body}");
    body
}

/// A GET's JSON body, whatever its status.
async fn get_json(url: String) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Reads watch lines as they come; `None` when the stream ends or breaks.
struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.extend_from_slice(&c),
                _ => return None,
            }
        }
    }
}

async fn watch(base: &str, from: &str) -> Lines {
    let resp = http()
        .get(format!(
            "{base}{}?watch=1&resourceVersion={from}",
            agents_path(NS)
        ))
        .send()
        .await
        .unwrap();
    let code = resp.status();
    if code != 200 {
        panic!(
            "watch from {from} on {base}: {code} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Lines {
        resp,
        buf: Vec::new(),
    }
}

/// The next event on `w`, which must be `kind` of `name`.
async fn expect_event(w: &mut Lines, kind: &str, name: &str) -> Value {
    let ev = w
        .next(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("the watch ended before {kind} {name}"));
    assert_eq!(ev["type"], kind, "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], name, "{ev}");
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_fresh_reads_and_watches_and_takes_over_when_the_leader_is_killed() {
    let db = TestDb::new().await;
    let a = replica(&db, "replica-a").await;
    let b = replica(&db, "replica-b").await;
    // One consumer: the slot's walsender is the first replica's; the second only follows.
    assert_eq!(
        slot_consumers(&db).await,
        vec!["ark-apiserver-cdc/replica-a"]
    );
    assert_eq!(metric(&a.base, "ark_replication_leader").await, Some(1.0));
    assert_eq!(metric(&b.base, "ark_replication_leader").await, Some(0.0));
    // The internal stream is no API: without the leader's secret it is refused, whatever
    // --auth-mode is (here off).
    for token in [None, Some("not-the-secret")] {
        let mut req = http().get(format!(
            "{}/internal/replication/v1/stream?resourceVersion=1",
            a.base
        ));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "token {token:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["reason"], "Unauthorized");
    }

    // A list on the follower, then a watch from it: writes through either replica arrive.
    let list: Value = get_json(format!("{}{}", b.base, agents_path(NS))).await;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("LIST on the follower: {list}\n{}", b.stderr()))
        .to_string();
    let mut w = watch(&b.base, &from).await;
    let on_leader = create(&a.base, "via-leader").await;
    let on_follower = create(&b.base, "via-follower").await;
    let first = expect_event(&mut w, "ADDED", "via-leader").await;
    assert_eq!(first["object"], on_leader);
    let second = expect_event(&mut w, "ADDED", "via-follower").await;
    assert_eq!(second["object"], on_follower);
    // The follower reports how far behind the leader it is, and the leader its followers.
    eventually(
        "lag and follower gauges",
        Duration::from_secs(10),
        || async {
            let lag = metric(&b.base, "ark_replication_follower_lag_events").await;
            let secs = metric(&b.base, "ark_replication_follower_lag_seconds").await;
            let followers = metric(&a.base, "ark_replication_followers").await;
            match (lag, secs, followers) {
                (Some(_), Some(s), Some(f)) if s < 5.0 && f == 1.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // A consistent read on the follower sees a write acknowledged by the leader.
    let made = create(&a.base, "read-after").await;
    let got: Value = get_json(format!("{}{}/read-after", b.base, agents_path(NS))).await;
    assert_eq!(got, made);
    expect_event(&mut w, "ADDED", "read-after").await;

    // The leader dies; the follower takes the slot within seconds, and its open watch
    // goes on without an error, a gap or a duplicate.
    let killed = Instant::now();
    kill(a.pid(), "-KILL");
    wait_for_holder(&db, "replica-b", Duration::from_secs(10)).await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    let after = create(&b.base, "after-failover").await;
    let ev = expect_event(&mut w, "ADDED", "after-failover").await;
    assert_eq!(ev["object"], after);
    assert_eq!(metric(&b.base, "ark_replication_leader").await, Some(1.0));
    assert!(metric(&b.base, "ark_replication_failovers_total").await >= Some(1.0));
    // Its stream from the dead leader ended: counted.
    assert!(metric(&b.base, "ark_replication_stream_reconnects_total").await >= Some(1.0));
    drop(a);
}

async fn readyz_verbose(base: &str) -> String {
    http()
        .get(format!("{base}/readyz?verbose"))
        .send()
        .await
        .map(|r| async { r.text().await.unwrap_or_default() })
        .unwrap_or_else(|e| panic!("readyz: {e}"))
        .await
}

async fn list_rv(base: &str) -> String {
    let list: Value = get_json(format!("{base}{}", agents_path(NS))).await;
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("LIST on {base}: {list}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_slot_over_at_once_and_a_watch_of_the_stopped_replica_resumes_on_another()
{
    let db = TestDb::new().await;
    let a = replica(&db, "replica-a").await;
    let b = replica(&db, "replica-b").await;
    assert!(readyz_verbose(&a.base)
        .await
        .contains("replica replica-a: leader"));
    let text = readyz_verbose(&b.base).await;
    assert!(
        text.contains("replica replica-b: follower of replica-a at"),
        "{text}\n{}",
        b.stderr()
    );
    let from = list_rv(&a.base).await;
    let mut w = watch(&a.base, &from).await;
    create(&b.base, "before").await;
    let seen = expect_event(&mut w, "ADDED", "before").await;
    let last_rv = seen["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let stopped = Instant::now();
    kill(a.pid(), "-TERM");
    // The stopped replica's watch ends cleanly (kube clients resume from the last rv).
    while let Some(ev) = w.next(Duration::from_secs(5)).await {
        assert_ne!(ev["type"], "ERROR", "{ev}");
    }
    wait_for_holder(&db, "replica-b", Duration::from_secs(10)).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "the hand-over took {took:?}"
    );
    let (code, stderr) = a.exit_within(Duration::from_secs(5)).await;
    assert_eq!(code, 0, "{stderr}");

    // The watch resumes on the other replica from its last resourceVersion: no 410, and
    // the next change arrives.
    let mut resumed = watch(&b.base, &last_rv).await;
    create(&b.base, "after").await;
    expect_event(&mut resumed, "ADDED", "after").await;
    assert!(readyz_verbose(&b.base)
        .await
        .contains("replica replica-b: leader"));
    // `slot status` names the holder.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ark-apiserver"))
        .args([
            "slot",
            "status",
            "--database-url",
            &db.url,
            "--slot-name",
            &db.slot_name(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("held by:             replica replica-b (127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("replica-b "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_loses_the_slot_and_after_waking_follows_and_serves_fresh_reads() {
    let db = TestDb::new().await;
    let a = replica(&db, "replica-a").await;
    let b = replica(&db, "replica-b").await;
    create(&a.base, "first").await;
    kill(a.pid(), "-STOP");
    // The walsender of the paused leader times out (--replication-timeout 3s) and the
    // follower takes the slot; never two consumers.
    let paused = Instant::now();
    wait_for_holder(&db, "replica-b", Duration::from_secs(20)).await;
    eprintln!("a paused leader was replaced after {:?}", paused.elapsed());
    let written = create(&b.base, "while-paused").await;
    kill(a.pid(), "-CONT");
    // The woken leader finds its stream gone, steps down and follows the new one; its
    // consistent reads then include what was written while it slept.
    eventually(
        "the woken replica follows",
        Duration::from_secs(20),
        || async {
            let consumers = slot_consumers(&db).await;
            assert!(consumers.len() <= 1, "{consumers:?}");
            let text = readyz_verbose(&a.base).await;
            if text.contains("replica replica-a: follower of replica-b") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    // It may still be catching up (503: honest); whatever it answers with 200 is current.
    let fresh_get = |name: &'static str, want: Value| {
        let base = a.base.clone();
        async move {
            eventually(
                "a consistent GET on the woken replica",
                Duration::from_secs(30),
                || async {
                    let r = http()
                        .get(format!("{base}{}/{name}", agents_path(NS)))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let code = r.status().as_u16();
                    let got: Value = r.json().await.map_err(|e| e.to_string())?;
                    match code {
                        200 => {
                            assert_eq!(got, want, "a stale read on the woken replica");
                            Ok(())
                        }
                        503 => Err(got.to_string()),
                        other => panic!("{other}: {got}"),
                    }
                },
            )
            .await
        }
    };
    fresh_get("while-paused", written).await;
    let later = create(&b.base, "after-waking").await;
    fresh_get("after-waking", later).await;
    assert_eq!(
        slot_consumers(&db).await,
        vec!["ark-apiserver-cdc/replica-b"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deleted_rows_are_purged_by_the_leader_only() {
    let db = TestDb::new().await;
    let retention = ["--deleted-retention", "1s"];
    // The leader's walsender outlives a hang by its --replication-timeout counted from
    // its last status update, which can be up to a second before the hang: 6 s leaves
    // the 2.5 s below well inside it.
    let a = replica_with(
        &db,
        "replica-a",
        &["--deleted-retention", "1s", "--replication-timeout", "6s"],
    )
    .await;
    let b = replica_with(&db, "replica-b", &retention).await;
    create(&a.base, "doomed").await;
    let sql = db.client().await;
    let rows = |name: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one(
                "SELECT count(*) FROM resources WHERE kind = 'Agent' AND name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    // The leader hangs: it holds the slot for its --replication-timeout, and the follower
    // does not take over the leader's once-only work meanwhile.
    kill(a.pid(), "-STOP");
    let stopped = Instant::now();
    sql.execute(
        "DELETE FROM resources WHERE kind = 'Agent' AND name = 'doomed'",
        &[],
    )
    .await
    .unwrap();
    // Past the retention and more than one purge round of the follower, before the slot
    // can change hands.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(stopped.elapsed())).await;
    assert_eq!(
        slot_consumers(&db).await,
        vec!["ark-apiserver-cdc/replica-a"],
        "the slot changed hands too early for this test"
    );
    assert_eq!(rows("doomed").await, 1, "a follower purged");
    // Once the follower leads, it purges.
    wait_for_holder(&db, "replica-b", Duration::from_secs(20)).await;
    eventually("the new leader purges", Duration::from_secs(20), || async {
        match rows("doomed").await {
            0 => Ok(()),
            n => Err(format!("{n} rows")),
        }
    })
    .await;
    kill(a.pid(), "-CONT");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_the_leaders_relay_no_longer_covers_reseeds_from_the_table() {
    let db = TestDb::new().await;
    // A relay log of a few entries, so that a stalled follower falls behind it.
    const WRITES: usize = 400;
    let small = ["--watch-history-events", "5"];
    let a = replica_with(&db, "replica-a", &small).await;
    let b = replica_with(&db, "replica-b", &small).await;
    // The follower stalls; the leader writes more than the socket buffers hold, so its
    // relay to the follower blocks while the log moves on past it.
    kill(b.pid(), "-STOP");
    let big = "x".repeat(64 * 1024);
    for i in 0..WRITES {
        let obj = serde_json::json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": format!("big-{i}")}, "spec": {"prompt": big}});
        let r = http()
            .post(format!("{}{}", a.base, agents_path(NS)))
            .json(&obj)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    kill(b.pid(), "-CONT");
    // The follower is told its position is gone (410 from the relay), re-seeds from the
    // table (its watches get 410, as a leader's do after a gap) and serves the table.
    eventually(
        "the follower serves the table",
        Duration::from_secs(30),
        || async {
            let r = http()
                .get(format!("{}{}", b.base, agents_path(NS)))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let l: Value = r.json().await.map_err(|e| e.to_string())?;
            match l["items"].as_array().map(|i| i.len()) {
                Some(WRITES) => Ok(()),
                other => Err(format!("{other:?}: {}", l["message"])),
            }
        },
    )
    .await;
    assert_eq!(
        slot_consumers(&db).await,
        vec!["ark-apiserver-cdc/replica-a"]
    );
}
