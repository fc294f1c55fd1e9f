//! Several replicas: servers of their own on the same database, sharing one slot of their
//! own (the main server keeps its slot), started one after another so the first leads.
//!
//! - watch latency on the leader, then on a follower, writes to the leader: the follower's
//!   events come through the leader's relay, so the difference is the internal stream;
//! - GET throughput against one replica, then spread over all of them;
//! - failover time over K kills: SIGKILL of the leader until another replica serves a
//!   consistent read as the slot's new holder; the killed one is restarted each time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{self, Api};
use crate::auth::drop_slot;
use crate::env::{Env, ServerProcess};
use crate::report::{Metric, Report};
use crate::scenarios;
use crate::stats::{closed_loop, Samples};
use crate::watch::{watch_latency, WatchPlan};

const SECTION: &str = "Several replicas (one slot consumer, followers fed by its relay)";
const SLOT: &str = "ark_loadgen_replicas";
const NAMESPACE: &str = "bench-replicas";

pub struct ReplicasPlan {
    pub replicas: usize,
    pub watch_rate: f64,
    pub watch_writes: usize,
    pub objects: usize,
    pub gets: usize,
    pub kills: usize,
}

fn args(i: usize) -> Vec<String> {
    [
        "--auth-mode",
        "off",
        "--slot-name",
        SLOT,
        "--replica-id",
        &format!("loadgen-{i}"),
        "--replication-timeout",
        "3s",
        "--pool-size",
        "8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The replica consuming the slot, by index.
async fn leader(c: &tokio_postgres::Client) -> Option<usize> {
    let row = c
        .query_opt(
            "SELECT w.application_name FROM pg_replication_slots s \
             JOIN pg_stat_replication w ON w.pid = s.active_pid WHERE s.slot_name = $1",
            &[&SLOT],
        )
        .await
        .ok()??;
    let name: String = row.get(0);
    name.strip_prefix("ark-apiserver-cdc/loadgen-")?
        .parse()
        .ok()
}

/// `n` GETs at concurrency 16, the i-th to replica i mod N.
async fn spread_gets(clients: &Arc<Vec<Api>>, names: &Arc<Vec<String>>, n: usize) -> Samples {
    let (clients, names) = (Arc::clone(clients), Arc::clone(names));
    closed_loop(16, n, move |i| {
        let api = clients[i % clients.len()].clone();
        let name = names[i % names.len()].clone();
        async move { api.get("queries", NAMESPACE, &name).await.map(drop) }
    })
    .await
}

pub async fn run(env: &Env, r: &mut Report, plan: &ReplicasPlan) -> Result<(), String> {
    let Some(bin) = env.bin.clone() else {
        r.note(
            "several replicas",
            "not measured: the scenario starts servers of its own, and --server names one running elsewhere".into(),
        );
        return Ok(());
    };
    drop_slot(&env.db_url, SLOT).await?;
    let (c, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    tokio::spawn(conn);
    let mut procs: Vec<ServerProcess> = Vec::new();
    for i in 0..plan.replicas {
        crate::run::progress(&format!("several replicas: starting replica {i}"));
        let p = ServerProcess::spawn(&bin, &env.db_url, &args(i))?;
        p.wait_ready(Duration::from_secs(60)).await?;
        procs.push(p);
    }
    let res = measure(&bin, env, &c, &mut procs, r, plan).await;
    for p in procs {
        p.stop().await;
    }
    drop_slot(&env.db_url, SLOT).await?;
    res
}

async fn measure(
    bin: &std::path::Path,
    env: &Env,
    c: &tokio_postgres::Client,
    procs: &mut [ServerProcess],
    r: &mut Report,
    plan: &ReplicasPlan,
) -> Result<(), String> {
    let lead = leader(c).await.ok_or("no replica holds the slot")?;
    let follower = (lead + 1) % procs.len();
    let base = |i: usize, procs: &[ServerProcess]| procs[i].base_url.clone();
    let api = Api::new(&base(lead, procs), false)?;
    api.create(
        "agents",
        NAMESPACE,
        api::agent("bench-agent", NAMESPACE, 1024),
    )
    .await?;

    // ---- watch latency, leader and follower ----
    let mut leader_row = None;
    for (who, at) in [("leader", lead), ("follower", follower)] {
        crate::run::progress(&format!("several replicas: watch on the {who}"));
        let p = watch_latency(
            &base(lead, procs),
            &WatchPlan {
                namespace: format!("{NAMESPACE}-{who}"),
                watchers: 1,
                h2_connections: None,
                rate: plan.watch_rate,
                writes: plan.watch_writes,
                watch_base: Some(base(at, procs)),
            },
            || {},
        )
        .await?;
        let s = p.from_ack.summary();
        let row = r.add(
            SECTION,
            &format!(
                "watch on the {who}, writes to the leader, {:.0} writes/s, from ack",
                plan.watch_rate
            ),
            &p.from_ack,
        );
        match leader_row {
            None => leader_row = Some(s),
            Some(l) => row.baseline = Some(("the leader's watch".into(), l, Metric::Latency)),
        }
    }
    if let Some(l) = leader_row {
        let f = r.rows.last().map(|row| row.summary);
        if let Some(f) = f {
            let p50 = f.p50.saturating_sub(l.p50);
            let p99 = f.p99.saturating_sub(l.p99);
            r.target(
                "a follower's watch within 2 ms (p50) and 20 ms (p99) of the leader's",
                format!("+{p50:?} p50, +{p99:?} p99"),
                p50 <= Duration::from_millis(2) && p99 <= Duration::from_millis(20),
            );
        }
    }

    // ---- GET throughput, one replica and all ----
    let names: Vec<String> = (0..plan.objects).map(|i| format!("qr-{i:06}")).collect();
    let bodies = Arc::new(
        names
            .iter()
            .map(|n| api::query(n, NAMESPACE, "bench-agent"))
            .collect::<Vec<_>>(),
    );
    let seeded = scenarios::create(&api, "queries", NAMESPACE, bodies, 16).await;
    if seeded.errors > 0 {
        return Err(format!("seeding {NAMESPACE}: {:?}", seeded.first_errors));
    }
    let names = Arc::new(names);
    let one = scenarios::get(
        &api,
        "queries",
        NAMESPACE,
        Arc::clone(&names),
        plan.gets,
        16,
    )
    .await;
    let one_sum = one.summary();
    r.add(SECTION, "get, concurrency 16, one replica", &one);
    let clients: Vec<Api> = (0..procs.len())
        .map(|i| Api::new(&base(i, procs), false))
        .collect::<Result<_, _>>()?;
    let clients = Arc::new(clients);
    // Connections to the other replicas are opened before the measured run.
    let _ = spread_gets(&clients, &names, 16 * clients.len()).await;
    let spread = spread_gets(&clients, &names, plan.gets).await;
    let row = r.add(
        SECTION,
        &format!("get, concurrency 16, spread over {} replicas", procs.len()),
        &spread,
    );
    row.baseline = Some(("one replica".into(), one_sum, Metric::Throughput));
    let n = plan.objects;
    let lists = (plan.gets / 50).max(3);
    let one = scenarios::list(&api, "queries", NAMESPACE, lists, 4, n).await;
    let one_sum = one.summary();
    r.add(
        SECTION,
        &format!("LIST {n} Queries, concurrency 4, one replica"),
        &one,
    );
    let spread = {
        let clients = Arc::clone(&clients);
        closed_loop(4, lists, move |i| {
            let api = clients[i % clients.len()].clone();
            async move {
                let body = api.list("queries", Some(NAMESPACE), "").await?;
                let got = scenarios::count_items(&body)?;
                if got != n {
                    return Err(format!("LIST returned {got} items, expected {n}"));
                }
                Ok(())
            }
        })
        .await
    };
    let row = r.add(
        SECTION,
        &format!(
            "LIST {n} Queries, concurrency 4, spread over {} replicas",
            procs.len()
        ),
        &spread,
    );
    row.baseline = Some(("one replica".into(), one_sum, Metric::Throughput));

    // ---- failover ----
    let mut failovers = Samples::default();
    let started = Instant::now();
    for k in 0..plan.kills {
        crate::run::progress(&format!(
            "several replicas: failover {} of {}",
            k + 1,
            plan.kills
        ));
        let Some(old) = leader(c).await else {
            failovers.record_error("no replica holds the slot".into());
            break;
        };
        let killed = Instant::now();
        let victim = std::mem::replace(
            &mut procs[old],
            ServerProcess::spawn(bin, &env.db_url, &args(old))?,
        );
        victim.kill().await;
        let deadline = killed + Duration::from_secs(30);
        let mut served = false;
        while Instant::now() < deadline {
            if let Some(now) = leader(c).await.filter(|n| *n != old) {
                let a = Api::new(&base(now, procs), false)?;
                if a.list("queries", Some(NAMESPACE), "limit=1").await.is_ok() {
                    served = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if served {
            failovers.latencies.push(killed.elapsed());
        } else {
            failovers.record_error(format!("no new leader served within 30 s (kill {k})"));
        }
        procs[old].wait_ready(Duration::from_secs(60)).await?;
    }
    failovers.elapsed = started.elapsed();
    let s = failovers.summary();
    r.add(
        SECTION,
        &format!(
            "failover: kill -9 of the leader → a consistent LIST served by the new one ({} kills)",
            plan.kills
        ),
        &failovers,
    );
    r.target(
        "failover after kill -9 under 5 s",
        format!("median {:?}, max {:?}", s.p50, s.max),
        s.count > 0 && s.max < Duration::from_secs(5),
    );
    Ok(())
}
