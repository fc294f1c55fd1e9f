//! A million objects on one replica (`--scale N`): the objects are written straight into
//! the table of a database of their own, as a backfill in psql would (triggers on, one
//! statement per 10,000 rows, each timed beside the same statement into a copy of the
//! table without triggers), then a server of its own is started on it and measured:
//!
//! - start until ready (consistent reads served), RSS and peak RSS against the JSON held;
//! - GET, a page of 500, a label-selected page of 500, an unpaginated LIST, and the
//!   server's extra memory while that LIST is in flight;
//! - one UPDATE of up to 200,000 rows in one statement (beside the same statement without
//!   triggers), until a watcher has received every event, and the peak RSS meanwhile;
//! - a restart: start until ready and peak RSS again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::api::Api;
use crate::env::{hwm_of, rss_of, Env, ServerProcess};
use crate::report::{mib, Report};
use crate::stats::{closed_loop, Samples};

const SECTION: &str = "Scale (objects written in SQL, then served by one replica)";
const DATABASE: &str = "ark_loadgen_scale";
const SLOT: &str = "ark_loadgen_scale";
const CHUNK: usize = 10_000;
const BIG_TXN: usize = 200_000;

pub struct ScalePlan {
    pub objects: usize,
    pub samples: usize,
}

/// Rows `$1 < i <= $2` of a Query each (about 930 bytes of JSON as the API returns it:
/// input, a target, a status with one response, two labels), named `query-<i>` in `ns-<i%10>`.
const INSERT: &str = "INSERT INTO {table} (uid, kind, api_version, namespace, name, spec, status, labels) \
 SELECT gen_random_uuid(), 'Query', 'ark.mckinsey.com/v1alpha1', 'ns-' || (i % 10), 'query-' || i, \
  jsonb_build_object( \
    'input', 'Summarise the quarterly revenue report for region ' || (i % 97) || ' and list the three largest changes against the previous quarter, with figures.', \
    'targets', jsonb_build_array(jsonb_build_object('type', 'agent', 'name', 'agent-' || (i % 100))), \
    'timeout', '5m', 'ttl', '720h', 'serviceAccount', 'default'), \
  jsonb_build_object( \
    'phase', 'done', \
    'responses', jsonb_build_array(jsonb_build_object( \
        'target', jsonb_build_object('type', 'agent', 'name', 'agent-' || (i % 100)), \
        'content', 'Revenue rose 4.2% quarter on quarter. The largest changes: cloud services +12.1% (EUR 3.4m), hardware -6.3% (EUR 1.1m), consulting +3.9% (EUR 0.8m). Margins held at 31%.', \
        'phase', 'done')), \
    'tokenUsage', jsonb_build_object('promptTokens', 412 + i % 50, 'completionTokens', 96 + i % 40, 'totalTokens', 508 + i % 90), \
    'duration', '2.314s'), \
  jsonb_build_object('ark.mckinsey.com/agent', 'agent-' || (i % 100), 'team', 'team-' || (i % 7)) \
 FROM generate_series($1::bigint + 1, $2::bigint) AS i";

/// One statement over the first `$1` Queries by name order of `i`.
const UPDATE: &str = "UPDATE {table} SET annotations = jsonb_build_object('backfill', 'v2') \
 WHERE kind = 'Query' AND name IN (SELECT 'query-' || i FROM generate_series(1, $1::bigint) AS i)";

/// The same server and credentials, another database: `…/<db>?params` → `…/ark_loadgen_scale?params`.
fn scale_url(db_url: &str) -> Result<String, String> {
    let (path, params) = match db_url.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (db_url, String::new()),
    };
    let (server, _db) = path
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://"))
        .ok_or_else(|| format!("cannot derive a database URL from {db_url}"))?;
    Ok(format!("{server}/{DATABASE}{params}"))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    tokio::spawn(conn);
    Ok(c)
}

async fn exec(c: &tokio_postgres::Client, sql: &str) -> Result<(), String> {
    c.batch_execute(sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))
}

/// Samples a process's RSS every 10 ms until dropped; `peak()` is the highest seen.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(rss_of(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = rss_of(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        RssSampler { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ratio(a: u64, b: u64) -> String {
    format!("{:.2}×", a as f64 / b.max(1) as f64)
}

pub async fn run(env: &Env, r: &mut Report, plan: &ScalePlan) -> Result<(), String> {
    let Some(bin) = env.bin.clone() else {
        r.note(
            "scale",
            "not measured: the scenario starts a server of its own, and --server names one running elsewhere".into(),
        );
        return Ok(());
    };
    let n = plan.objects;
    let admin = connect(&env.db_url).await?;
    crate::auth::drop_slot(&env.db_url, SLOT).await?;
    exec(
        &admin,
        &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
    )
    .await?;
    exec(&admin, &format!("CREATE DATABASE {DATABASE}")).await?;
    let url = scale_url(&env.db_url)?;
    let res = measure(&bin, &url, r, plan).await;
    crate::auth::drop_slot(&env.db_url, SLOT).await?;
    exec(
        &admin,
        &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
    )
    .await?;
    res.map_err(|e| format!("scale ({n} objects): {e}"))
}

fn server_args() -> Vec<String> {
    [
        "--auth-mode",
        "off",
        "--slot-name",
        SLOT,
        "--pool-size",
        "8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn measure(
    bin: &std::path::Path,
    url: &str,
    r: &mut Report,
    plan: &ScalePlan,
) -> Result<(), String> {
    let n = plan.objects;
    let migrated = tokio::process::Command::new(bin)
        .args(["migrate", "--database-url", url])
        .output()
        .await
        .map_err(|e| format!("running migrate: {e}"))?;
    if !migrated.status.success() {
        return Err(format!(
            "migrate failed: {}",
            String::from_utf8_lossy(&migrated.stderr)
        ));
    }
    let c = connect(url).await?;
    // The same table without triggers: the baseline each statement is timed beside.
    exec(
        &c,
        "CREATE TABLE resources_raw (LIKE resources INCLUDING DEFAULTS INCLUDING INDEXES)",
    )
    .await?;

    // ---- bulk INSERT, one statement per 10,000 rows ----
    crate::run::progress(&format!("scale: writing {n} Queries in SQL"));
    let (mut with, mut without) = (Samples::default(), Samples::default());
    let insert = |t: &str| INSERT.replace("{table}", t);
    let (ins, ins_raw) = (insert("resources"), insert("resources_raw"));
    let mut lo = 0usize;
    while lo < n {
        let hi = (lo + CHUNK).min(n);
        for (sql, samples) in [(&ins, &mut with), (&ins_raw, &mut without)] {
            let t = Instant::now();
            c.execute(sql.as_str(), &[&(lo as i64), &(hi as i64)])
                .await
                .map_err(|e| format!("bulk insert: {e}"))?;
            samples.latencies.push(t.elapsed());
            samples.elapsed += t.elapsed();
        }
        lo = hi;
    }
    let total_with = with.elapsed;
    let total_without = without.elapsed;
    let row = r.add(
        SECTION,
        &format!("INSERT 10,000 rows in one statement, triggers on ({n} rows in all)"),
        &with,
    );
    row.baseline = Some((
        "the same statement, no triggers".into(),
        without.summary(),
        crate::report::Metric::Latency,
    ));
    r.note(
        &format!("writing {n} rows: triggers on / off"),
        format!(
            "{:.1} s / {:.1} s ({})",
            total_with.as_secs_f64(),
            total_without.as_secs_f64(),
            ratio(
                total_with.as_micros() as u64,
                total_without.as_micros() as u64
            )
        ),
    );
    r.target(
        "a bulk statement costs at most 5× the same statement without triggers",
        ratio(
            total_with.as_micros() as u64,
            total_without.as_micros() as u64,
        ),
        total_with <= total_without * 5,
    );
    exec(&c, "CHECKPOINT").await?;

    // ---- start ----
    crate::run::progress("scale: starting the server");
    let (mut server, started) = start(bin, url).await?;
    let pid = server.pid().ok_or("the server has no pid")?;
    let ready_rss = rss_of(pid).unwrap_or(0);
    let start_peak = hwm_of(pid).unwrap_or(0);
    let api = Api::new(&server.base_url, false)?;

    // ---- an unpaginated LIST: the JSON held, its latency, its memory in flight ----
    crate::run::progress("scale: LIST");
    let mut json_held = 0u64;
    let mut list = Samples::default();
    let mut list_extra = 0u64;
    for _ in 0..3 {
        let before = rss_of(pid).unwrap_or(0);
        let sampler = RssSampler::start(pid);
        let t = Instant::now();
        let body = streamed_len(&api, "").await?;
        list.latencies.push(t.elapsed());
        list.elapsed += t.elapsed();
        list_extra = list_extra.max(sampler.peak().saturating_sub(before));
        json_held = body;
    }
    r.note(
        &format!("{n} objects: JSON held (an unpaginated LIST's body)"),
        mib(json_held),
    );
    r.note(
        &format!("{n} objects: start until ready"),
        format!("{:.1} s", started.as_secs_f64()),
    );
    r.note(
        &format!("{n} objects: RSS when ready / peak while starting"),
        format!(
            "{} ({} the JSON) / {} ({})",
            mib(ready_rss),
            ratio(ready_rss, json_held),
            mib(start_peak),
            ratio(start_peak, json_held)
        ),
    );
    r.target(
        "RSS at most 2× the JSON held",
        ratio(ready_rss, json_held),
        ready_rss <= 2 * json_held,
    );
    r.add(
        SECTION,
        &format!("LIST all {n} Queries, unpaginated"),
        &list,
    );
    r.note(
        &format!("{n} objects: extra RSS while one unpaginated LIST is in flight"),
        format!(
            "{} ({} of the JSON)",
            mib(list_extra),
            ratio(list_extra, json_held)
        ),
    );

    // ---- GET and pages ----
    crate::run::progress("scale: GET and pages");
    let gets = {
        let api = api.clone();
        closed_loop(1, plan.samples, move |i| {
            let api = api.clone();
            let k = (i * 7_919) % n + 1;
            async move {
                api.get("queries", &format!("ns-{}", k % 10), &format!("query-{k}"))
                    .await
                    .map(drop)
            }
        })
        .await
    };
    let g = gets.summary();
    r.add(SECTION, &format!("GET, concurrency 1, {n} objects"), &gets);
    // Where a GET's time goes: the same GET with resourceVersion=0 is served from the
    // state as it is, without the consistent read's round trip through PostgreSQL (a
    // logical message committed, then seen come back on the stream).
    let gets0 = {
        let api = api.clone();
        closed_loop(1, plan.samples, move |i| {
            let api = api.clone();
            let k = (i * 7_919) % n + 1;
            async move {
                api.get_with(
                    "queries",
                    &format!("ns-{}", k % 10),
                    &format!("query-{k}"),
                    "resourceVersion=0",
                )
                .await
                .map(drop)
            }
        })
        .await
    };
    r.add(
        SECTION,
        &format!("GET resourceVersion=0 (no read point), concurrency 1, {n} objects"),
        &gets0,
    );
    r.target(
        "GET p50 ≤ 0.5 ms",
        format!("{:?}", g.p50),
        g.p50 <= Duration::from_micros(500),
    );
    for (what, query) in [
        ("a page of 500 (all namespaces)", "limit=500".to_string()),
        (
            "a label-selected page of 500 (1 in 100 match)",
            "limit=500&labelSelector=ark.mckinsey.com%2Fagent%3Dagent-7".to_string(),
        ),
    ] {
        // One page is checked outside the timing: parsing 500 items is this generator's
        // work (about as long as the server's), not the server's latency.
        let body = api.list("queries", None, &query).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let got = v["items"].as_array().map_or(0, Vec::len);
        let want = if query.contains("label") {
            (1..=n).filter(|i| i % 100 == 7).count().min(500)
        } else {
            500.min(n)
        };
        if got != want {
            return Err(format!("{what}: a page of {got} items, not {want}"));
        }
        let pages = {
            let api = api.clone();
            let query = query.clone();
            closed_loop(1, (plan.samples / 10).max(5), move |_| {
                let (api, query) = (api.clone(), query.clone());
                async move { api.list("queries", None, &query).await.map(drop) }
            })
            .await
        };
        let s = pages.summary();
        r.add(
            SECTION,
            &format!("LIST {what}, concurrency 1, {n} objects"),
            &pages,
        );
        r.target(
            &format!("{what}: p50 ≤ 5 ms"),
            format!("{:?}", s.p50),
            s.p50 <= Duration::from_millis(5),
        );
    }

    // ---- one big transaction, through the watch ----
    let big = BIG_TXN.min(n);
    crate::run::progress(&format!("scale: one UPDATE of {big} rows, watched"));
    let rv = list_rv(&api).await?;
    let sampler = RssSampler::start(pid);
    let watcher = tokio::spawn(count_events(api.clone(), rv, big));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let update = |t: &str| UPDATE.replace("{table}", t);
    let t = Instant::now();
    c.execute(update("resources").as_str(), &[&(big as i64)])
        .await
        .map_err(|e| format!("big update: {e}"))?;
    let stmt = t.elapsed();
    let delivered = watcher.await.map_err(|e| e.to_string())??;
    let all_events = t.elapsed();
    let peak = sampler.peak();
    drop(sampler);
    let t_raw = Instant::now();
    c.execute(update("resources_raw").as_str(), &[&(big as i64)])
        .await
        .map_err(|e| format!("big update (raw): {e}"))?;
    let raw = t_raw.elapsed();
    r.note(
        &format!("one UPDATE of {big} rows: triggers on / off"),
        format!(
            "{:.2} s / {:.2} s ({})",
            stmt.as_secs_f64(),
            raw.as_secs_f64(),
            ratio(stmt.as_micros() as u64, raw.as_micros() as u64)
        ),
    );
    r.target(
        &format!("an UPDATE of {big} rows at most 5× without triggers"),
        ratio(stmt.as_micros() as u64, raw.as_micros() as u64),
        stmt <= raw * 5,
    );
    r.note(
        &format!("one UPDATE of {big} rows: until a watcher had all {delivered} events"),
        format!(
            "{:.2} s (statement start to last event)",
            all_events.as_secs_f64()
        ),
    );
    r.note(
        &format!("one UPDATE of {big} rows: peak RSS while it is applied and watched"),
        format!("{} ({} the JSON)", mib(peak), ratio(peak, json_held)),
    );

    // ---- restart ----
    crate::run::progress("scale: restart");
    server.stop().await;
    let (restarted, again) = start(bin, url).await?;
    server = restarted;
    let pid = server.pid().ok_or("the server has no pid")?;
    r.note(
        &format!("{n} objects: restart until ready / RSS when ready / peak while starting"),
        format!(
            "{:.1} s / {} ({}) / {} ({})",
            again.as_secs_f64(),
            mib(rss_of(pid).unwrap_or(0)),
            ratio(rss_of(pid).unwrap_or(0), json_held),
            mib(hwm_of(pid).unwrap_or(0)),
            ratio(hwm_of(pid).unwrap_or(0), json_held)
        ),
    );
    let s = started.max(again);
    r.target(
        "ready within 30 s of start",
        format!("{:.1} s", s.as_secs_f64()),
        s <= Duration::from_secs(30),
    );
    server.stop().await;
    exec(&c, "DROP TABLE resources_raw").await?;
    Ok(())
}

async fn start(bin: &std::path::Path, url: &str) -> Result<(ServerProcess, Duration), String> {
    let t = Instant::now();
    let server = ServerProcess::spawn(bin, url, &server_args())?;
    server.wait_ready(Duration::from_secs(300)).await?;
    Ok((server, t.elapsed()))
}

/// The byte length of an unpaginated LIST of every Query, read as it streams.
async fn streamed_len(api: &Api, query: &str) -> Result<u64, String> {
    let resp = api
        .http
        .get(format!(
            "{}/apis/ark.mckinsey.com/v1alpha1/queries?{query}",
            api.base
        ))
        .send()
        .await
        .map_err(|e| format!("list: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("list: {}", resp.status()));
    }
    let mut body = resp.bytes_stream();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        len += chunk.map_err(|e| format!("list body: {e}"))?.len() as u64;
    }
    Ok(len)
}

async fn list_rv(api: &Api) -> Result<String, String> {
    let body = api.list("queries", None, "limit=1").await?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    v["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "a list without a resourceVersion".into())
}

/// Watches Queries from `rv` until `want` MODIFIED events arrived (or 5 minutes passed).
async fn count_events(api: Api, rv: String, want: usize) -> Result<usize, String> {
    let resp = api
        .http
        .get(format!(
            "{}/apis/ark.mckinsey.com/v1alpha1/queries?watch=1&resourceVersion={rv}&timeoutSeconds=300",
            api.base
        ))
        .send()
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let mut body = resp.bytes_stream();
    let (mut got, mut errors) = (0usize, 0usize);
    let mut tail: Vec<u8> = Vec::new();
    while got < want {
        let Some(chunk) = body.next().await else {
            break;
        };
        let chunk = chunk.map_err(|e| format!("watch body: {e}"))?;
        tail.extend_from_slice(&chunk);
        while let Some(nl) = tail.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = tail.drain(..=nl).collect();
            if line.starts_with(b"{\"type\":\"MODIFIED\"") {
                got += 1;
            } else if line.starts_with(b"{\"type\":\"ERROR\"") {
                errors += 1;
            }
        }
        if errors > 0 {
            return Err(format!(
                "the watch ended with an ERROR event after {got} of {want} events"
            ));
        }
    }
    if got < want {
        return Err(format!("the watch ended after {got} of {want} events"));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_database_is_the_same_server_and_parameters_with_another_name() {
        assert_eq!(
            scale_url("postgres://ark@127.0.0.1:5433/ark?sslmode=disable").unwrap(),
            "postgres://ark@127.0.0.1:5433/ark_loadgen_scale?sslmode=disable"
        );
        assert_eq!(
            scale_url("postgresql://u:p@db/prod").unwrap(),
            "postgresql://u:p@db/ark_loadgen_scale"
        );
        assert!(scale_url("host=db dbname=ark").is_err());
    }
}
