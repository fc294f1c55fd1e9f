//! etcd, the store behind the default Ark backend (kube-apiserver with CRDs), measured with
//! the same values in the same run: a throwaway single-member etcd on loopback, and the
//! three operations the server's figures are compared with (put, range, watch).
//!
//! The etcd is started with its defaults (fsync on every commit, as in production), so its
//! write latency includes the same kind of durable commit PostgreSQL pays. It serves its
//! clients over TLS, as kube-apiserver's etcd does and as ark-apiserver always does, so
//! that the two are compared paying for the same encryption.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, KvClient, TlsOptions, WatchOptions,
    WatchStream,
};
use tokio::sync::watch;

use crate::stamps::{pair_from_writes, WriteStamps};
use crate::stats::{closed_loop, open_loop_n, LatencyPair, Samples};

/// Client connections load is spread over. kube-apiserver multiplexes everything on one
/// gRPC connection; a few keep this client's own channel from being what is measured.
pub const CONNECTIONS: usize = 4;
/// Largest gRPC message accepted: a range over every key returns all values in one
/// response, and etcd itself sends up to 2 GiB (tonic's default limit is 4 MiB).
const MAX_MESSAGE: usize = i32::MAX as usize;
/// Outstanding puts beyond which the open loop reports the rate as not sustained.
const MAX_IN_FLIGHT: usize = 1024;
/// How long watchers may take, after the last write, to receive everything.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fresh etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A local single-member etcd: the child process, its temporary directory (data and log),
/// and its client endpoint. Dropping it kills the process and removes the directory.
pub struct EtcdServer {
    child: Child,
    dir: PathBuf,
    endpoint: Endpoint,
}

/// Where an etcd serves and the CA its TLS certificate is signed by.
#[derive(Clone)]
pub struct Endpoint {
    pub url: String,
    ca_pem: Arc<str>,
}

impl Endpoint {
    fn options(&self) -> ConnectOptions {
        ConnectOptions::new().with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(self.ca_pem.as_bytes()))
                .domain_name("127.0.0.1"),
        )
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM: (CA, certificate, key).
fn serving_certificate() -> Result<(String, String, String), String> {
    let (ca, cert, key) = crate::auth::loopback_certificate("ark-loadgen etcd CA")
        .map_err(|e| format!("etcd: {e}"))?;
    Ok((ca, cert.pem(), key.serialize_pem()))
}

impl EtcdServer {
    /// Starts a local single-member etcd (binary from `$ARK_BENCH_ETCD`, else `etcd` on
    /// PATH, else /usr/bin/etcd) on free loopback ports with a temporary data directory,
    /// and waits until it serves a read. The error names the fix (`apt-get install
    /// etcd-server`) if the binary is missing, and quotes etcd's log if it fails to start.
    ///
    /// Settings: etcd's defaults (fsync on, 100,000-entry snapshots, no auto-compaction:
    /// kube-apiserver compacts itself, every 5 minutes, longer than a run), except a backend
    /// quota of 8 GiB (the largest etcd recommends) so large runs do not hit the 2 GiB
    /// default's "database space exceeded".
    pub async fn start() -> Result<EtcdServer, String> {
        let bin = find_etcd()?;
        let (client_port, peer_port) = two_free_ports()?;
        let dir = std::env::temp_dir().join(format!(
            "ark-etcd-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("etcd: creating {}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("etcd.log"))
            .map_err(|e| format!("etcd: creating its log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("etcd: opening its log: {e}"))?;
        let (ca_pem, cert_pem, key_pem) = serving_certificate()?;
        let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert_file, cert_pem)
            .and_then(|()| std::fs::write(&key_file, key_pem))
            .map_err(|e| format!("etcd: writing its certificate: {e}"))?;
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let spawned = Command::new(&bin)
            .arg("--name=ark-bench")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--cert-file={}", cert_file.display()))
            .arg(format!("--key-file={}", key_file.display()))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=ark-bench={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--quota-backend-bytes=8589934592")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("etcd: starting {}: {e}", bin.display()));
            }
        };
        // From here on, Drop cleans up whatever fails.
        let mut server = EtcdServer {
            child,
            dir,
            endpoint: Endpoint {
                url: client_url,
                ca_pem: Arc::from(ca_pem),
            },
        };
        server.wait_serving().await?;
        Ok(server)
    }

    /// The client URL, `https://127.0.0.1:<port>`, and its CA.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// The etcd process's id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the etcd process, from `/proc/<pid>/status` (VmRSS); `None` if
    /// unreadable (not Linux, or the process is gone).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kb.checked_mul(1024)
    }

    /// Polls (every 100 ms, not a busy loop) until a read succeeds, the process exits, or
    /// [`START_TIMEOUT`] passes.
    async fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let opts = self
            .endpoint
            .options()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "etcd exited during startup ({status}); its log:\n{}",
                    log_tail(&self.dir)
                ));
            }
            let last_error =
                match Client::connect([self.endpoint.url.as_str()], Some(opts.clone())).await {
                    Ok(mut c) => match c.get("ark-loadgen/ready", None).await {
                        Ok(_) => return Ok(()),
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e.to_string(),
                };
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd did not serve within {} s (last error: {last_error}); its log:\n{}",
                    START_TIMEOUT.as_secs(),
                    log_tail(&self.dir)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // A throwaway store: no graceful shutdown needed. wait() reaps the child, and
        // returns at once after SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Puts `values` under `prefix` (key = prefix + index) at `concurrency`, one put per value
/// (no transaction), over up to [`CONNECTIONS`] client connections, driven by
/// [`closed_loop`]. Each latency is one put, acknowledged once etcd has committed
/// (fsynced) and applied it.
pub async fn put(
    endpoint: &Endpoint,
    prefix: &str,
    values: &[String],
    concurrency: usize,
) -> Result<Samples, String> {
    let kvs = Arc::new(kv_clients(endpoint, CONNECTIONS.min(concurrency.max(1))).await?);
    let prefix: Arc<str> = Arc::from(prefix);
    let values = Arc::new(values.to_vec());
    Ok(closed_loop(concurrency.max(1), values.len(), move |i| {
        let mut kv = kvs[i % kvs.len()].clone();
        let key = format!("{prefix}{i}");
        let value = values[i].clone().into_bytes();
        async move {
            kv.put(key, value, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("etcd put: {e}"))
        }
    })
    .await)
}

/// Ranges over every key under `prefix` (whole values, in one unpaginated linearizable
/// range, as a LIST without the watch cache does), `iterations` times sequentially.
/// Returns the samples and the key count of the last successful range.
pub async fn range(
    endpoint: &Endpoint,
    prefix: &str,
    iterations: usize,
) -> Result<(Samples, usize), String> {
    let kv = kv_clients(endpoint, 1)
        .await?
        .pop()
        .ok_or("etcd: no client connection")?;
    let keys = Arc::new(AtomicUsize::new(0));
    let prefix = prefix.to_string();
    let last = Arc::clone(&keys);
    let samples = closed_loop(1, iterations, move |_| {
        let (mut kv, prefix, last) = (kv.clone(), prefix.clone(), Arc::clone(&last));
        async move {
            let resp = kv
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| format!("etcd range: {e}"))?;
            last.store(resp.kvs().len(), Ordering::Relaxed);
            Ok(())
        }
    })
    .await;
    Ok((samples, keys.load(Ordering::Relaxed)))
}

/// `watchers` watches on `prefix` (spread over up to `connections` client connections,
/// one gRPC watch stream each, with previous values as kube-apiserver asks), then puts of
/// `value` at `rate`/s for `n` keys (prefix + index) on a connection of their own. For
/// every (watcher, put) pair: latency from the put's acknowledgement to the event's
/// arrival, and from the put's start. Each watch is confirmed created before the first
/// put. An error if any watcher misses an acknowledged put's event within 10 s of the last
/// put. The samples' `elapsed` is the write phase's wall time, so their ops/s is events
/// delivered per second.
pub async fn watch_latency(
    endpoint: &Endpoint,
    prefix: &str,
    watchers: usize,
    connections: usize,
    rate: f64,
    n: usize,
    value: &str,
) -> Result<LatencyPair, String> {
    if !(rate.is_finite() && rate > 0.0) || n == 0 || watchers == 0 {
        return Err(format!(
            "etcd watch: needs positive watchers, rate and puts (got {watchers}, {rate}/s, {n})"
        ));
    }
    let clients = connect_many(endpoint, connections.clamp(1, watchers)).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let prefix: Arc<str> = Arc::from(prefix);
    let mut tasks = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let mut wc = clients[w % clients.len()]
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let mut stream = wc
            .watch(
                &*prefix,
                Some(WatchOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .map_err(|e| format!("etcd watch: opening watcher {w}: {e}"))?;
        // The first response confirms creation; a put before it could be missed.
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(resp))) if resp.created() => {}
            Ok(Ok(other)) => return Err(format!("etcd watch: watcher {w} not created: {other:?}")),
            Ok(Err(e)) => return Err(format!("etcd watch: watcher {w}: {e}")),
            Err(_) => return Err(format!("etcd watch: watcher {w} not created within 10 s")),
        }
        tasks.push(tokio::spawn(receive(
            stream,
            Arc::clone(&prefix),
            n,
            stop_rx.clone(),
        )));
    }

    let kv = kv_clients(endpoint, 1)
        .await?
        .pop()
        .ok_or("etcd: no client connection")?;
    let stamps = Arc::new(WriteStamps::new(n));
    let value: Arc<[u8]> = Arc::from(value.as_bytes());
    let op = {
        let (stamps, prefix) = (Arc::clone(&stamps), Arc::clone(&prefix));
        move |i: usize| {
            let (mut kv, stamps) = (kv.clone(), Arc::clone(&stamps));
            let (key, value) = (format!("{prefix}{i}"), value.to_vec());
            async move {
                stamps.started(i);
                kv.put(key, value, None)
                    .await
                    .map_err(|e| format!("etcd put: {e}"))?;
                stamps.acked(i);
                Ok(())
            }
        }
    };
    let writes = open_loop_n(rate, n, MAX_IN_FLIGHT, op).await;

    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    let mut pair = pair_from_writes(&writes);
    let mut failures = Vec::new();
    for (w, mut task) in tasks.into_iter().enumerate() {
        let joined = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(j) => j,
            Err(_) => {
                // Late: stop everyone still waiting (they return what they have).
                let _ = stop_tx.send(true);
                task.await
            }
        };
        match joined {
            Ok(Ok(arrivals)) => {
                let missing = stamps.missing(&arrivals);
                if missing > 0 {
                    failures.push(format!("watcher {w} missed {missing} of {n} events"));
                }
                stamps.add_latencies(&arrivals, &mut pair);
            }
            Ok(Err(e)) => failures.push(format!("watcher {w}: {e}")),
            Err(e) => failures.push(format!("watcher {w}: task failed: {e}")),
        }
    }
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(5).map(String::as_str).collect();
        return Err(format!(
            "etcd watch: {} of {watchers} watchers incomplete within {} s of the last put: {}",
            failures.len(),
            EVENT_TIMEOUT.as_secs(),
            shown.join("; ")
        ));
    }
    Ok(pair)
}

/// One watcher: records when each key `prefix + i` (i < n) first arrives as a put, until
/// all n have or `stop` is set.
async fn receive(
    mut stream: WatchStream,
    prefix: Arc<str>,
    n: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<Option<Instant>>, String> {
    let mut arrivals: Vec<Option<Instant>> = vec![None; n];
    let mut seen = 0usize;
    while seen < n {
        let msg = tokio::select! {
            // Set, or the measuring side is gone: either way, stop.
            _ = stop.changed() => break,
            msg = stream.message() => msg,
        };
        let arrived = Instant::now();
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => return Err("the watch stream ended".into()),
            Err(e) => return Err(format!("the watch stream failed: {e}")),
        };
        if resp.canceled() {
            return Err(format!("the watch was canceled: {}", resp.cancel_reason()));
        }
        for ev in resp.events() {
            // etcd sends only Put and Delete (the client panics on anything else, which
            // the etcd v3 protocol does not have).
            if ev.event_type() != EventType::Put {
                continue;
            }
            let index = ev
                .kv()
                .and_then(|kv| kv.key().strip_prefix(prefix.as_bytes()))
                .and_then(|rest| std::str::from_utf8(rest).ok())
                .and_then(|rest| rest.parse::<usize>().ok());
            if let Some(slot @ None) = index.and_then(|i| arrivals.get_mut(i)) {
                *slot = Some(arrived);
                seen += 1;
            }
        }
    }
    Ok(arrivals)
}

async fn connect_many(endpoint: &Endpoint, count: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        // Each Client is its own HTTP/2 connection.
        let c = Client::connect(
            [endpoint.url.as_str()],
            Some(
                endpoint
                    .options()
                    .with_connect_timeout(Duration::from_secs(5)),
            ),
        )
        .await
        .map_err(|e| format!("etcd: connecting to {}: {e}", endpoint.url))?;
        clients.push(c);
    }
    Ok(clients)
}

async fn kv_clients(endpoint: &Endpoint, count: usize) -> Result<Vec<KvClient>, String> {
    Ok(connect_many(endpoint, count)
        .await?
        .iter()
        .map(|c| {
            c.kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        })
        .collect())
}

/// `$ARK_BENCH_ETCD`, else `etcd` on PATH, else /usr/bin/etcd.
fn find_etcd() -> Result<PathBuf, String> {
    locate_etcd(
        std::env::var_os("ARK_BENCH_ETCD"),
        std::env::var_os("PATH"),
        Path::new("/usr/bin/etcd"),
    )
}

const ETCD_FIX: &str = "install it (Debian/Ubuntu: apt-get install etcd-server) or point ARK_BENCH_ETCD at an etcd binary";

fn locate_etcd(
    explicit: Option<OsString>,
    path: Option<OsString>,
    fallback: &Path,
) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "ARK_BENCH_ETCD={} is not a file: {ETCD_FIX}",
                p.display()
            ))
        };
    }
    path.iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .or_else(|| Some(fallback.to_path_buf()).filter(|p| p.is_file()))
        .ok_or_else(|| {
            format!(
                "etcd not found (looked at $ARK_BENCH_ETCD, PATH and {}): {ETCD_FIX}",
                fallback.display()
            )
        })
}

/// Two distinct free loopback ports: both are bound at once, so they differ, then released
/// for etcd (the window in which another process could take one is tiny).
fn two_free_ports() -> Result<(u16, u16), String> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("etcd: finding a free port: {e}"))
    };
    let (a, b) = (bind()?, bind()?);
    let port = |l: &std::net::TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(|e| format!("etcd: finding a free port: {e}"))
    };
    Ok((port(&a)?, port(&b)?))
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Put, range and watch against a real etcd. Prints the figures; asserts that every
    /// operation succeeded, every event arrived, and the directory is removed on drop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_baselines_on_a_real_etcd() {
        let etcd = EtcdServer::start().await.expect("etcd");
        let ep = etcd.endpoint();
        let value = format!(
            r#"{{"kind":"Query","spec":{{"input":"{}"}}}}"#,
            "x".repeat(200)
        );
        let values = vec![value.clone(); 1000];
        for conc in [1usize, 20, 64] {
            let prefix = format!("/registry/queries/c{conc}/");
            let s = put(&ep, &prefix, &values, conc).await.expect("put");
            let m = s.summary();
            println!(
                "etcd put c{conc}: {:.0}/s p50 {:?} p99 {:?}",
                m.ops_per_sec, m.p50, m.p99
            );
            assert_eq!((m.count, m.errors), (1000, 0), "{:?}", s.first_errors);
        }
        let (s, keys) = range(&ep, "/registry/queries/c64/", 20)
            .await
            .expect("range");
        let m = s.summary();
        println!("etcd range of {keys} keys: p50 {:?} p99 {:?}", m.p50, m.p99);
        assert_eq!((keys, m.count), (1000, 20));
        for watchers in [1usize, 50] {
            let prefix = format!("/registry/watch{watchers}/");
            let p = watch_latency(&ep, &prefix, watchers, CONNECTIONS, 1000.0, 1000, &value)
                .await
                .expect("watch");
            let (a, st) = (p.from_ack.summary(), p.from_start.summary());
            println!(
                "etcd watch, {watchers} watchers, 1000/s: from ack p50 {:?} p99 {:?} | from start p50 {:?} p99 {:?}",
                a.p50, a.p99, st.p50, st.p99
            );
            assert_eq!(
                (a.count, a.errors),
                (watchers * 1000, 0),
                "{:?}",
                p.from_ack.first_errors
            );
        }
        assert!(etcd.rss_bytes().is_some_and(|b| b > 0));
        let dir = etcd.dir.clone();
        drop(etcd);
        assert!(!dir.exists());
    }

    #[test]
    fn a_missing_binary_names_the_fix() {
        let nowhere = Path::new("/nonexistent/etcd");
        let missing = locate_etcd(None, Some("/nonexistent".into()), nowhere);
        assert!(missing.is_err_and(|e| e.contains("apt-get install etcd-server")));
        let bad = locate_etcd(Some("/nonexistent/etcd".into()), None, nowhere);
        assert!(bad.is_err_and(|e| e.contains("apt-get install etcd-server")));
    }
}
