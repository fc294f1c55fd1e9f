//! The run: the order of the scenarios, the scale, and what each figure is compared with.
//! Baselines run right after the scenario they frame, on the same machine and cluster, so a
//! noisy neighbour moves both.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::api::{self, Api};
use crate::auth::AuthPlan;
use crate::baseline_etcd::{self, EtcdServer};
use crate::baseline_pg;
use crate::env::{Env, EnvOptions};
use crate::mixed::{Mixed, MixedPlan};
use crate::replicas::ReplicasPlan;
use crate::report::{mib, Metric, Report};
use crate::scenarios;
use crate::stats::{fmt_dur, Summary};
use crate::watch::{watch_latency, WatchPlan};
use crate::Cli;

/// The published figures of the design's Go implementation (PostgreSQL mode, 10,000 Ark
/// resources), in ms for latencies and ops/s for throughput.
mod published {
    pub const LIST_P50_MS: f64 = 1504.0;
    pub const LIST_OPS: f64 = 12.5;
    pub const CREATE_P50_MS: f64 = 106.0;
    pub const GET_P50_MS: f64 = 106.0;
    pub const WATCH_P50_MS: f64 = 73.0;
    pub const WATCHERS_200_P50_MS: f64 = 80.0;
    pub const BURST_OPS: f64 = 230.0;
    pub const SUSTAINED_OPS: f64 = 180.0;
}

struct Scale {
    objects: usize,
    agents: usize,
    list_iterations: usize,
    page_limit: usize,
    page_walks: usize,
    watch_rate: f64,
    watch_writes: usize,
    many_watchers: usize,
    fleet_watchers: usize,
    fleet_connections: usize,
    fleet_writes: usize,
    fleet_rate: f64,
    mixed_seed: usize,
    mixed_rate: f64,
    mixed_time: Duration,
    auth: AuthPlan,
    replicas: ReplicasPlan,
}

impl Scale {
    fn new(cli: &Cli) -> Scale {
        if cli.smoke {
            Scale {
                objects: cli.objects.unwrap_or(200),
                agents: 10,
                list_iterations: 3,
                page_limit: 50,
                page_walks: 1,
                watch_rate: 200.0,
                watch_writes: 100,
                many_watchers: 20,
                fleet_watchers: 200,
                fleet_connections: 2,
                fleet_writes: 5,
                fleet_rate: 5.0,
                mixed_seed: 50,
                mixed_rate: 50.0,
                mixed_time: Duration::from_secs(2),
                auth: AuthPlan {
                    objects: 20,
                    gets: 20,
                    lists: 3,
                },
                replicas: ReplicasPlan {
                    replicas: 3,
                    watch_rate: 100.0,
                    watch_writes: 20,
                    objects: 20,
                    gets: 50,
                    kills: 2,
                },
            }
        } else {
            Scale {
                objects: cli.objects.unwrap_or(10_000),
                agents: 500,
                list_iterations: 30,
                page_limit: 500,
                page_walks: 5,
                watch_rate: 1000.0,
                watch_writes: 5000,
                many_watchers: 200,
                fleet_watchers: 10_000,
                fleet_connections: 8,
                fleet_writes: 20,
                fleet_rate: 2.0,
                mixed_seed: 1000,
                mixed_rate: published::SUSTAINED_OPS,
                mixed_time: Duration::from_secs(20),
                auth: AuthPlan {
                    objects: 1000,
                    gets: 5000,
                    lists: 200,
                },
                replicas: ReplicasPlan {
                    replicas: 3,
                    watch_rate: 1000.0,
                    watch_writes: 5000,
                    objects: 1000,
                    gets: 20_000,
                    kills: 10,
                },
            }
        }
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:06}")).collect()
}

fn bodies(names: &[String], make: impl Fn(&str) -> Bytes) -> Arc<Vec<Bytes>> {
    Arc::new(names.iter().map(|n| make(n)).collect())
}

fn strings(b: &[Bytes]) -> Vec<String> {
    b.iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

pub fn progress(what: &str) {
    eprintln!("ark-loadgen: {what}");
}

pub async fn run(cli: Cli) -> Result<Report, String> {
    let scale = Scale::new(&cli);
    let skip = |p: &str| cli.skip.iter().any(|s| s == p);
    let mut r = Report {
        title: format!(
            "ark-apiserver benchmark report{}",
            if cli.smoke {
                " (smoke mode: figures are not meaningful)"
            } else {
                ""
            }
        ),
        ..Default::default()
    };
    r.context.push(format!("Date (UTC): {}", chrono_now()));
    r.context
        .push(format!("Machine: {} CPUs, {}", num_cpus(), mem_total()));
    r.context
        .push(format!("Objects per create scenario: {}", scale.objects));
    r.context.push(
        "Everything (PostgreSQL, the server, etcd and this generator) shares the machine; \
         baselines run on the same cluster in the same run."
            .into(),
    );

    progress("starting PostgreSQL and the server");
    let env = Env::start(&EnvOptions {
        server: cli.server.clone(),
        database_url: cli.database_url.clone(),
        server_bin: cli.server_bin.clone(),
        pool_size: 40,
    })
    .await?;
    let res = scenarios_all(&cli, &scale, &env, &mut r, &skip).await;
    let hint = env.log_hint();
    env.stop().await;
    res.map_err(|e| format!("{e}{hint}"))?;

    let md = r.markdown();
    println!("{md}");
    if let Some(dir) = cli.output.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&cli.output, &md)
        .map_err(|e| format!("writing {}: {e}", cli.output.display()))?;
    eprintln!("ark-loadgen: report written to {}", cli.output.display());
    Ok(r)
}

async fn scenarios_all(
    cli: &Cli,
    sc: &Scale,
    env: &Env,
    r: &mut Report,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let api = Api::new(&env.base_url, false)?;
    let n = sc.objects;
    let rss_empty = env.server_rss();
    let etcd = if skip("etcd") {
        None
    } else {
        Some(EtcdServer::start().await?)
    };

    let mut update_baselines: Vec<(usize, Summary)> = Vec::new();
    // One Agent per namespace first: the published Query shape points at one.
    for ns in [
        "bench-c1",
        "bench-c20",
        "bench-c64",
        "bench-watch",
        "bench-fleet",
        "bench-mixed",
    ] {
        api.create("agents", ns, api::agent("bench-agent", ns, 1024))
            .await?;
    }

    // ---- create ----
    let q_names = names("q-", n);
    for (conc, ns) in [(1usize, "bench-c1"), (20, "bench-c20"), (64, "bench-c64")] {
        progress(&format!("create: {n} Queries at concurrency {conc}"));
        let b = bodies(&q_names, |name| api::query(name, ns, "bench-agent"));
        let cpu = env.cpu_mark();
        let s = scenarios::create(&api, "queries", ns, Arc::clone(&b), conc).await;
        r.note(
            &format!("CPU during create, concurrency {conc}"),
            env.cpu_since(cpu),
        );
        let sum = s.summary();
        let create_row = r.rows.len();
        let row = r.add(
            "Writes",
            &format!("create Query (~250 B), concurrency {conc}"),
            &s,
        );
        row.published = Some((published::CREATE_P50_MS, Metric::Latency));
        if !skip("raw") {
            let (ins, upd) =
                baseline_pg::raw_writes(&env.db_url, &format!("c{conc}"), &strings(&b), conc)
                    .await?;
            r.add(
                "Writes",
                &format!("  raw PostgreSQL INSERT, concurrency {conc}"),
                &ins,
            );
            r.add(
                "Writes",
                &format!("  raw PostgreSQL UPDATE, concurrency {conc}"),
                &upd,
            );
            let ins_sum = ins.summary();
            r.rows[create_row].baseline = Some(("raw INSERT".into(), ins_sum, Metric::Throughput));
            if conc == 1 {
                r.target(
                    "create, concurrency 1: p50 ≤ 2 ms",
                    fmt_dur(sum.p50),
                    sum.p50 <= Duration::from_millis(2),
                );
            }
            if conc == 64 {
                let pct = 100.0 * sum.ops_per_sec / ins_sum.ops_per_sec.max(1e-9);
                r.target(
                    "create, concurrency 64: ≥ 50% of raw INSERT throughput",
                    format!(
                        "{:.0} vs {:.0} ops/s ({pct:.0}%)",
                        sum.ops_per_sec, ins_sum.ops_per_sec
                    ),
                    pct >= 50.0,
                );
            }
            // The update baseline is read by the update scenario below.
            update_baselines.push((conc, upd.summary()));
        }
        if let Some(e) = &etcd {
            let s = baseline_etcd::put(
                &e.endpoint(),
                &format!("/registry/queries/{ns}/"),
                &strings(&b),
                conc,
            )
            .await?;
            r.add("Writes", &format!("  etcd put, concurrency {conc}"), &s);
        }
        if conc == 1 {
            if let (Some(before), Some(after)) = (rss_empty, env.server_rss()) {
                let list = api.list("queries", Some(ns), "").await?;
                r.note(
                    &format!("server RSS, empty → {n} Queries (+{n} history events)"),
                    format!("{} → {}", mib(before), mib(after)),
                );
                let ratio = (after.saturating_sub(before)) as f64 / list.len() as f64;
                r.note(
                    "JSON size of those Queries (one LIST body)",
                    mib(list.len() as u64),
                );
                r.target(
                    "memory ≤ 3× the JSON held",
                    format!("{ratio:.1}× (RSS growth / JSON)"),
                    ratio <= 3.0,
                );
            }
        }
    }
    for (size, label) in [(4096usize, "4 KB"), (65536, "64 KB")] {
        let a_names = names(&format!("a{}-", size / 1024), sc.agents);
        progress(&format!(
            "create: {} Agents of {label} at concurrency 20",
            sc.agents
        ));
        let b = bodies(&a_names, |name| api::agent(name, "bench-c20", size));
        let s = scenarios::create(&api, "agents", "bench-c20", Arc::clone(&b), 20).await;
        r.add(
            "Writes",
            &format!("create Agent ({label}), concurrency 20"),
            &s,
        );
        let g = scenarios::get(&api, "agents", "bench-c20", Arc::new(a_names), sc.agents, 1).await;
        r.add("Reads", &format!("get Agent ({label}), concurrency 1"), &g);
    }

    // ---- reads ----
    let c64 = Arc::new(q_names.clone());
    progress("get");
    for conc in [1usize, 20] {
        let s = scenarios::get(&api, "queries", "bench-c64", Arc::clone(&c64), n, conc).await;
        let sum = s.summary();
        let row = r.add("Reads", &format!("get Query, concurrency {conc}"), &s);
        row.published = Some((published::GET_P50_MS, Metric::Latency));
        if conc == 1 {
            r.target(
                "GET: p50 ≤ 0.5 ms",
                fmt_dur(sum.p50),
                sum.p50 <= Duration::from_micros(500),
            );
        }
    }
    progress(&format!("LIST of {n} objects"));
    let expect = n;
    let s = scenarios::list(&api, "queries", "bench-c64", sc.list_iterations, 1, expect).await;
    let sum = s.summary();
    let list_row = r.rows.len();
    let row = r.add(
        "Reads",
        &format!("LIST {n} Queries, unpaginated, concurrency 1"),
        &s,
    );
    row.published = Some((published::LIST_P50_MS, Metric::Latency));
    r.target(
        &format!("LIST of {n}: p50 ≤ 50 ms"),
        fmt_dur(sum.p50),
        sum.p50 <= Duration::from_millis(50),
    );
    let cpu = env.cpu_mark();
    let s = scenarios::list(&api, "queries", "bench-c64", sc.list_iterations, 4, expect).await;
    r.note("CPU during LIST, concurrency 4", env.cpu_since(cpu));
    let row = r.add(
        "Reads",
        &format!("LIST {n} Queries, unpaginated, concurrency 4"),
        &s,
    );
    row.published = Some((published::LIST_OPS, Metric::Throughput));
    if let Some(e) = &etcd {
        let (s, keys) = baseline_etcd::range(
            &e.endpoint(),
            "/registry/queries/bench-c64/",
            sc.list_iterations,
        )
        .await?;
        let base = s.summary();
        r.add("Reads", &format!("  etcd range of {keys} keys"), &s);
        r.rows[list_row].baseline = Some(("etcd range".into(), base, Metric::Latency));
    }
    let s = scenarios::pages(
        &api,
        "queries",
        "bench-c64",
        sc.page_limit,
        sc.page_walks,
        expect,
    )
    .await;
    let sum = s.summary();
    r.add("Reads", &format!("LIST page, limit {}", sc.page_limit), &s);
    r.target(
        "LIST page of 500: p50 ≤ 5 ms",
        fmt_dur(sum.p50),
        sum.p50 <= Duration::from_millis(5),
    );

    // ---- update ----
    for conc in [1usize, 64] {
        progress(&format!("update at concurrency {conc}"));
        let s = scenarios::update(&api, "queries", "bench-c64", Arc::clone(&c64), conc, conc).await;
        let row = r.add(
            "Writes",
            &format!("update Query (merge patch), concurrency {conc}"),
            &s,
        );
        if let Some((_, base)) = update_baselines.iter().find(|(c, _)| *c == conc).copied() {
            row.baseline = Some(("raw UPDATE".into(), base, Metric::Throughput));
        }
    }

    // ---- server-side apply, beside the merge patches above ----
    for (conc, round, what) in [
        (1usize, 1001usize, "a changed field"),
        (64, 1064, "a changed field"),
        (64, 1064, "unchanged, nothing written"),
    ] {
        progress(&format!("server-side apply at concurrency {conc}: {what}"));
        let s = scenarios::apply(&api, "queries", "bench-c64", Arc::clone(&c64), conc, round).await;
        let row = r.add(
            "Writes",
            &format!("apply Query (server-side, forced), {what}, concurrency {conc}"),
            &s,
        );
        if let Some((_, base)) = update_baselines.iter().find(|(c, _)| *c == conc).copied() {
            row.baseline = Some(("raw UPDATE".into(), base, Metric::Throughput));
        }
    }

    // ---- watch ----
    watch_scenarios(cli, sc, env, r, etcd.as_ref(), skip).await?;

    // ---- mixed ----
    if !skip("mixed") {
        progress("mixed load");
        let m = Mixed::seed(
            api.clone(),
            &MixedPlan {
                namespace: "bench-mixed".into(),
                seed: sc.mixed_seed,
            },
        )
        .await?;
        let res = m.at_rate(sc.mixed_rate, sc.mixed_time).await;
        let row = r.add(
            "Mixed load (60% create, 20% get, 10% list, 10% delete)",
            &format!("target rate {:.0} ops/s, all", sc.mixed_rate),
            &res.all,
        );
        row.published = Some((published::SUSTAINED_OPS, Metric::Throughput));
        for (op, s) in &res.by_op {
            r.add(
                "Mixed load (60% create, 20% get, 10% list, 10% delete)",
                &format!("  target rate: {}", op.name()),
                s,
            );
        }
        let cpu = env.cpu_mark();
        let res = m.saturated(64, sc.mixed_time).await;
        r.note("CPU during mixed load at saturation", env.cpu_since(cpu));
        let row = r.add(
            "Mixed load (60% create, 20% get, 10% list, 10% delete)",
            "saturation (64 workers), all",
            &res.all,
        );
        row.published = Some((published::BURST_OPS, Metric::Throughput));
        for (op, s) in &res.by_op {
            r.add(
                "Mixed load (60% create, 20% get, 10% list, 10% delete)",
                &format!("  saturation: {}", op.name()),
                s,
            );
        }
    }

    // ---- delete ----
    for (conc, ns) in [(1usize, "bench-c1"), (64, "bench-c64")] {
        progress(&format!("delete at concurrency {conc}"));
        let s = scenarios::delete(&api, "queries", ns, Arc::new(q_names.clone()), conc).await;
        r.add("Writes", &format!("delete Query, concurrency {conc}"), &s);
    }
    // ---- several replicas ----
    if !skip("replicas") && cli.replicas >= 2 {
        let plan = ReplicasPlan {
            replicas: cli.replicas,
            ..sc.replicas
        };
        crate::replicas::run(env, r, &plan).await?;
    }

    // ---- authentication and authorization ----
    if !skip("auth") {
        crate::auth::run(env, &api, r, &sc.auth).await?;
    }

    // ---- scale: a database and a server of its own ----
    let objects = cli.scale.unwrap_or(if cli.smoke { 2_000 } else { 200_000 });
    if !skip("scale") && objects > 0 {
        let plan = crate::scale::ScalePlan {
            objects,
            samples: if cli.smoke { 50 } else { 2_000 },
        };
        crate::scale::run(env, r, &plan).await?;
    }
    if let Some(e) = &etcd {
        if let Some(rss) = e.rss_bytes() {
            r.note("etcd RSS at the end of the run", mib(rss));
        }
    }
    Ok(())
}

async fn watch_scenarios(
    _cli: &Cli,
    sc: &Scale,
    env: &Env,
    r: &mut Report,
    etcd: Option<&EtcdServer>,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    const SECTION: &str =
        "Watch latency (write acknowledged → event received; and from the write's start)";
    let raw = if skip("raw") {
        None
    } else {
        progress("raw logical decoding baseline");
        let value =
            String::from_utf8_lossy(&api::query("w-0", "bench-raw", "bench-agent")).into_owned();
        let p =
            baseline_pg::raw_decoding(&env.db_url, sc.watch_rate, sc.watch_writes, &value).await?;
        r.add(
            SECTION,
            &format!(
                "  raw logical decoding, {:.0} writes/s, from ack",
                sc.watch_rate
            ),
            &p.from_ack,
        );
        r.add(
            SECTION,
            &format!(
                "  raw logical decoding, {:.0} writes/s, from start",
                sc.watch_rate
            ),
            &p.from_start,
        );
        Some(p)
    };
    let base_of = |raw: &Option<crate::stats::LatencyPair>,
                   from_ack: bool|
     -> Option<(String, Summary, Metric)> {
        raw.as_ref().map(|p| {
            let s = if from_ack { &p.from_ack } else { &p.from_start };
            (
                "raw logical decoding".to_string(),
                s.summary(),
                Metric::Latency,
            )
        })
    };

    let mut ns_counter = 0;
    for (watchers, published_ms) in [
        (1usize, published::WATCH_P50_MS),
        (sc.many_watchers, published::WATCHERS_200_P50_MS),
    ] {
        ns_counter += 1;
        let ns = format!("bench-watch-{ns_counter}");
        Api::new(&env.base_url, false)?
            .create("agents", &ns, api::agent("bench-agent", &ns, 1024))
            .await?;
        progress(&format!(
            "watch: {watchers} watchers, {:.0} writes/s",
            sc.watch_rate
        ));
        let plan = WatchPlan {
            namespace: ns,
            watchers,
            h2_connections: None,
            rate: sc.watch_rate,
            writes: sc.watch_writes,
            watch_base: None,
        };
        let cpu = env.cpu_mark();
        let p = watch_latency(&env.base_url, &plan, || {}).await?;
        r.note(
            &format!("CPU during watch, {watchers} watcher(s)"),
            env.cpu_since(cpu),
        );
        let a = p.from_ack.summary();
        let row = r.add(
            SECTION,
            &format!(
                "{watchers} watcher(s), {:.0} writes/s, from ack",
                sc.watch_rate
            ),
            &p.from_ack,
        );
        row.baseline = base_of(&raw, true);
        let row = r.add(
            SECTION,
            &format!(
                "{watchers} watcher(s), {:.0} writes/s, from start",
                sc.watch_rate
            ),
            &p.from_start,
        );
        row.baseline = base_of(&raw, false);
        row.published = Some((published_ms, Metric::Latency));
        if watchers == sc.many_watchers {
            let within = raw
                .as_ref()
                .map(|p| a.p50.as_secs_f64() / p.from_ack.summary().p50.as_secs_f64().max(1e-9));
            r.target(
                &format!("watch, {:.0} writes/s, {watchers} watchers: p50 ≤ 2 ms, p99 ≤ 10 ms, ≤ 1.5× raw decoding", sc.watch_rate),
                format!(
                    "p50 {}, p99 {}{}",
                    fmt_dur(a.p50),
                    fmt_dur(a.p99),
                    within.map(|w| format!(", {w:.2}× raw")).unwrap_or_default()
                ),
                a.p50 <= Duration::from_millis(2) && a.p99 <= Duration::from_millis(10) && within.is_none_or(|w| w <= 1.5),
            );
        }
        if let Some(e) = etcd {
            // TLS on both sides, and each compared in the same connection shape: one
            // connection per watcher (as the server's rows above), and the watchers
            // multiplexed over a few connections (as kube-apiserver's etcd client and its
            // proxy to an aggregated server do).
            let mut shapes = vec![(watchers, "one connection each")];
            if watchers == sc.many_watchers {
                shapes.push((baseline_etcd::CONNECTIONS, "4 gRPC connections"));
            }
            for (connections, shape) in shapes {
                let cpu = (env.cpu_mark(), crate::env::cpu_seconds(e.pid()));
                let p = baseline_etcd::watch_latency(
                    &e.endpoint(),
                    &format!("/registry/watch{ns_counter}-{connections}/"),
                    watchers,
                    connections,
                    sc.watch_rate,
                    sc.watch_writes,
                    &String::from_utf8_lossy(&api::query("w-0", "bench-watch", "bench-agent")),
                )
                .await?;
                let etcd_cores = crate::env::cpu_seconds(e.pid())
                    .zip(cpu.1)
                    .map(|(now, then)| (now - then) / cpu.0.elapsed().as_secs_f64().max(1e-9));
                r.note(
                    &format!("CPU during etcd's watch, {watchers} watcher(s), {shape}"),
                    format!(
                        "etcd {} cores; {}",
                        etcd_cores.map_or("?".into(), |c| format!("{c:.2}")),
                        env.cpu_since(cpu.0)
                    ),
                );
                r.add(
                    SECTION,
                    &format!("  etcd over TLS, {watchers} watcher(s), {shape}, from ack"),
                    &p.from_ack,
                )
                .baseline_only = true;
                let theirs = p.from_ack.summary();
                if connections == watchers {
                    if watchers == sc.many_watchers {
                        r.target(
                            &format!(
                                "watch, {watchers} watchers, one TLS connection each: p99 ≤ etcd's"
                            ),
                            format!(
                                "p99 {} against etcd's {}",
                                fmt_dur(a.p99),
                                fmt_dur(theirs.p99)
                            ),
                            a.p99 <= theirs.p99,
                        );
                    }
                    continue;
                }
                ns_counter += 1;
                let ns = format!("bench-watch-{ns_counter}");
                Api::new(&env.base_url, false)?
                    .create("agents", &ns, api::agent("bench-agent", &ns, 1024))
                    .await?;
                progress(&format!(
                    "watch: {watchers} watchers over {connections} HTTP/2 connections"
                ));
                let plan = WatchPlan {
                    namespace: ns,
                    watchers,
                    h2_connections: Some(connections),
                    rate: sc.watch_rate,
                    writes: sc.watch_writes,
                    watch_base: None,
                };
                let cpu = env.cpu_mark();
                let h2 = watch_latency(&env.base_url, &plan, || {}).await?;
                r.note(
                    &format!(
                        "CPU during watch, {watchers} watchers on {connections} HTTP/2 connections"
                    ),
                    env.cpu_since(cpu),
                );
                let ours = h2.from_ack.summary();
                let row = r.add(
                    SECTION,
                    &format!(
                        "{watchers} watchers on {connections} HTTP/2 connections, {:.0} writes/s, from ack",
                        sc.watch_rate
                    ),
                    &h2.from_ack,
                );
                row.baseline = Some((
                    format!("etcd over TLS, {shape}"),
                    theirs.clone(),
                    Metric::Latency,
                ));
                r.target(
                    &format!(
                        "watch, {watchers} watchers on {connections} TLS connections: p99 ≤ etcd's"
                    ),
                    format!(
                        "p99 {} against etcd's {}",
                        fmt_dur(ours.p99),
                        fmt_dur(theirs.p99)
                    ),
                    ours.p99 <= theirs.p99,
                );
            }
        }
    }

    if !skip("watch10k") {
        let ns = "bench-fleet";
        progress(&format!(
            "watch: {} watchers over {} HTTP/2 connections",
            sc.fleet_watchers, sc.fleet_connections
        ));
        let plan = WatchPlan {
            namespace: ns.into(),
            watchers: sc.fleet_watchers,
            h2_connections: Some(sc.fleet_connections),
            rate: sc.fleet_rate,
            writes: sc.fleet_writes,
            watch_base: None,
        };
        let before = env.server_rss();
        let after = std::sync::Mutex::new(None);
        let cpu = env.cpu_mark();
        let p = watch_latency(&env.base_url, &plan, || {
            *after.lock().unwrap() = env.server_rss();
        })
        .await?;
        r.note(
            &format!(
                "CPU during watch, {} watchers (incl. opening them)",
                sc.fleet_watchers
            ),
            env.cpu_since(cpu),
        );
        let a = p.from_ack.summary();
        r.add(
            SECTION,
            &format!(
                "{} watchers over {} HTTP/2 connections, from ack",
                sc.fleet_watchers, sc.fleet_connections
            ),
            &p.from_ack,
        );
        r.add(
            SECTION,
            &format!(
                "{} watchers over {} HTTP/2 connections, from start",
                sc.fleet_watchers, sc.fleet_connections
            ),
            &p.from_start,
        );
        r.target(
            &format!(
                "{} watchers: a write reaches all with p99 ≤ 250 ms",
                sc.fleet_watchers
            ),
            format!("p99 {}", fmt_dur(a.p99)),
            a.p99 <= Duration::from_millis(250),
        );
        let after = *after.lock().unwrap();
        if let (Some(b), Some(a)) = (before, after) {
            let per = a.saturating_sub(b) as f64 / sc.fleet_watchers as f64;
            r.note(
                &format!(
                    "server RSS before → with {} idle watchers",
                    sc.fleet_watchers
                ),
                format!("{} → {}", mib(b), mib(a)),
            );
            r.target(
                "≤ 10 KB RSS per idle watcher",
                format!("{:.1} KB", per / 1024.0),
                per <= 10.0 * 1024.0,
            );
        }
    }
    Ok(())
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.0} GiB memory", kb as f64 / 1048576.0))
        .unwrap_or_default()
}
