//! The system under test: a PostgreSQL cluster and an ark-apiserver process, either started
//! here (the default: a throwaway cluster with durable settings, and the server binary built
//! next to this one) or already running (`--server` and `--database-url`).
//!
//! The server runs as its own process so that its CPU and memory are its own: the generator
//! shares the machine with it, and RSS is read from /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ark_apiserver::embedded::{free_port, Cluster};

pub struct Env {
    pub db_url: String,
    pub base_url: String,
    /// The server binary, when the server runs here (scenarios that need servers of their
    /// own, with other flags, start them from it).
    pub bin: Option<PathBuf>,
    server: Option<tokio::process::Child>,
    server_log: Option<PathBuf>,
    _cluster: Option<Cluster>,
}

pub struct EnvOptions {
    pub server: Option<String>,
    pub database_url: Option<String>,
    pub server_bin: Option<PathBuf>,
    pub pool_size: usize,
}

impl Env {
    pub async fn start(opts: &EnvOptions) -> Result<Env, String> {
        if let Some(base) = &opts.server {
            let db_url = opts.database_url.clone().ok_or(
                "--server needs --database-url too: the baselines run on the same database",
            )?;
            let env = Env {
                db_url,
                base_url: base.trim_end_matches('/').to_string(),
                bin: None,
                server: None,
                server_log: None,
                _cluster: None,
            };
            env.wait_ready(Duration::from_secs(10)).await?;
            return Ok(env);
        }
        let (db_url, cluster) = match &opts.database_url {
            Some(url) => (url.clone(), None),
            None => {
                // Durable settings (fsync on): the figures are meant to be what an operator
                // gets, and every baseline runs on this same cluster.
                let cluster =
                    Cluster::start(None, false).map_err(|e| format!("starting PostgreSQL: {e}"))?;
                cluster
                    .stop_when_process_exits()
                    .map_err(|e| format!("arming the cluster watcher: {e}"))?;
                let admin = cluster.url("postgres");
                let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connecting to {admin}: {e}"))?;
                tokio::spawn(conn);
                c.batch_execute("CREATE DATABASE ark")
                    .await
                    .map_err(|e| format!("creating database ark: {e}"))?;
                (cluster.url("ark"), Some(cluster))
            }
        };
        let bin = match &opts.server_bin {
            Some(b) => b.clone(),
            None => sibling_binary("ark-apiserver")?,
        };
        let mut args: Vec<String> = vec!["--auth-mode".into(), "off".into()];
        args.extend(["--pool-size".into(), opts.pool_size.to_string()]);
        let server = ServerProcess::spawn(&bin, &db_url, &args)?;
        let env = Env {
            db_url,
            base_url: server.base_url.clone(),
            bin: Some(bin),
            server: Some(server.child),
            server_log: Some(server.log),
            _cluster: cluster,
        };
        env.wait_ready(Duration::from_secs(60)).await?;
        Ok(env)
    }

    async fn wait_ready(&self, within: Duration) -> Result<(), String> {
        wait_ready(&self.base_url, within)
            .await
            .map_err(|e| format!("{e}{}", self.log_hint()))
    }

    pub fn log_hint(&self) -> String {
        match &self.server_log {
            Some(p) => format!(" (server log: {})", p.display()),
            None => String::new(),
        }
    }

    /// The server's resident set size, when it runs here.
    pub fn server_rss(&self) -> Option<u64> {
        let pid = self.server.as_ref()?.id()?;
        rss_of(pid)
    }

    pub async fn stop(mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        if let Some(log) = &self.server_log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Polls `/readyz` (always served without authorization) until it answers 200.
async fn wait_ready(base_url: &str, within: Duration) -> Result<(), String> {
    let http = crate::api::http_client(false)?;
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http.get(format!("{base_url}/readyz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("/readyz answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the server at {base_url} was not ready within {within:?}: {last}"
    ))
}

/// One ark-apiserver process started here: `serve` on a free loopback port with the
/// arguments given, its output in a log file that is removed when it stops.
pub struct ServerProcess {
    pub base_url: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl ServerProcess {
    pub fn spawn(bin: &Path, db_url: &str, args: &[String]) -> Result<ServerProcess, String> {
        let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let log = std::env::temp_dir().join(format!(
            "ark-loadgen-server-{}-{port}.log",
            std::process::id()
        ));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--log-level", "warn"])
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(db_url)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(ServerProcess {
            base_url: format!("https://127.0.0.1:{port}"),
            child,
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, as a node failure would: nothing is released cleanly.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = std::fs::remove_file(&self.log);
    }

    pub async fn wait_ready(&self, within: Duration) -> Result<(), String> {
        wait_ready(&self.base_url, within)
            .await
            .map_err(|e| format!("{e} (server log: {})", self.log.display()))
    }

    /// SIGTERM, as an operator's rollout sends it: the server releases its slot on the
    /// way out, so the next server started on the same slot finds it free.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// VmRSS of a process, in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// VmHWM of a process, its peak RSS so far, in bytes.
pub fn hwm_of(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A binary built by the same `cargo build` as this one (target/<profile>/<name>).
fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().unwrap_or(Path::new("."));
    let bin = dir.join(name);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build it first (`cargo build --release --bins`, or use scripts/bench), or pass --server-bin",
            bin.display()
        ))
    }
}

/// CPU time used by the server and by every PostgreSQL process, so the report can say what
/// bounded a scenario: a figure with both far below the cores available is bound by
/// waiting (fsync, locks, round trips), not by computing.
#[derive(Clone, Copy)]
pub struct CpuMark {
    server: f64,
    postgres: f64,
    generator: f64,
    at: std::time::Instant,
}

impl CpuMark {
    /// Wall time since the mark.
    pub fn elapsed(&self) -> std::time::Duration {
        self.at.elapsed()
    }
}

impl Env {
    pub fn cpu_mark(&self) -> CpuMark {
        let server = self
            .server
            .as_ref()
            .and_then(|c| c.id())
            .and_then(cpu_seconds)
            .unwrap_or(0.0);
        CpuMark {
            server,
            postgres: postgres_cpu_seconds(),
            generator: cpu_seconds(std::process::id()).unwrap_or(0.0),
            at: std::time::Instant::now(),
        }
    }

    /// "server 1.2 cores, PostgreSQL 0.6 cores, this generator 0.5 cores" over the time since
    /// `since`.
    pub fn cpu_since(&self, since: CpuMark) -> String {
        let now = self.cpu_mark();
        let wall = now.at.duration_since(since.at).as_secs_f64().max(1e-9);
        format!(
            "server {:.2} cores, PostgreSQL {:.2} cores, this generator {:.2} cores (over {:.1} s)",
            (now.server - since.server) / wall,
            (now.postgres - since.postgres) / wall,
            (now.generator - since.generator) / wall,
            wall
        )
    }
}

/// utime + stime of a process, in seconds (from /proc/<pid>/stat, in clock ticks of 1/100 s,
/// the value of CLK_TCK on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds of every process named `postgres` (the postmaster and all its backends).
/// Backends that exited take their time with them, so this counts the long-lived ones: the
/// server's pool, the walsender and the generator's connections.
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(cpu_seconds)
        .sum()
}
