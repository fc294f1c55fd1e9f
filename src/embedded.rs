//! A private PostgreSQL cluster started with the machine's `initdb` and `pg_ctl`: the
//! embedded default of `ark-apiserver dev`, and the database the integration tests use.
//!
//! PostgreSQL refuses to run as root, so when this process is root the cluster's files are
//! given to the `postgres` user and its tools run through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL 15+ server binaries found (looked for initdb and pg_ctl in ARK_POSTGRES_BIN_DIR if set, else in /usr/lib/postgresql/*/bin and on PATH). \
         Install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; macOS: brew install postgresql@16), \
         or run `ark-apiserver serve --database-url postgres://...` against an existing PostgreSQL 15+ with wal_level=logical."
    )]
    NoBinaries,
    #[error("running as root, but there is no `postgres` user to run PostgreSQL as (initdb refuses root): create one (useradd -r postgres) or run as a normal user")]
    NoPostgresUser,
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
}

fn step(step: &str, detail: impl ToString) -> EmbeddedError {
    EmbeddedError::Step {
        step: step.to_string(),
        detail: detail.to_string(),
    }
}

/// A running cluster. Stopping is explicit ([`Cluster::stop`]); dropping also stops it.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    base: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<String>,
    keep: bool,
    stopped: bool,
}

/// Settings every cluster gets: logical replication on, loopback only, its own socket dir.
fn settings(port: u16, socket_dir: &Path, fast: bool) -> String {
    let mut s = format!(
        "\n# ark-apiserver embedded settings\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\nwal_sender_timeout = '10s'\n\
         max_connections = 300\nshared_buffers = '128MB'\n",
        socket_dir.display()
    );
    if fast {
        // Test clusters hold a server (and a slot) per test database.
        s.push_str("max_replication_slots = 200\nmax_wal_senders = 200\n");
        // Test clusters trade durability for speed; nothing in them must survive a crash.
        // synchronous_commit stays on: logical decoding only sees flushed WAL, so turning it
        // off would delay the change stream by up to wal_writer_delay.
        s.push_str("fsync = off\nfull_page_writes = off\n");
    }
    s
}

/// Finds `initdb`/`pg_ctl` of PostgreSQL 15 or later: in `ARK_POSTGRES_BIN_DIR` when set
/// (to choose among several installed versions), else the newest under
/// /usr/lib/postgresql, else on PATH.
pub fn find_binaries() -> Result<PathBuf, EmbeddedError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("ARK_POSTGRES_BIN_DIR") {
        let dir = PathBuf::from(dir);
        let pg_ctl = dir.join("pg_ctl");
        if dir.join("initdb").is_file()
            && pg_ctl.is_file()
            && major_version(&pg_ctl).is_some_and(|v| v >= 15)
        {
            return Ok(dir);
        }
        return Err(EmbeddedError::NoBinaries);
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .map(|v| (v, e.path().join("bin")))
            })
            .filter(|(v, _)| *v >= 15)
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
        candidates.extend(dirs.into_iter().map(|(_, p)| p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    for dir in candidates {
        let pg_ctl = dir.join("pg_ctl");
        if dir.join("initdb").is_file()
            && pg_ctl.is_file()
            && major_version(&pg_ctl).is_some_and(|v| v >= 15)
        {
            return Ok(dir);
        }
    }
    Err(EmbeddedError::NoBinaries)
}

fn major_version(pg_ctl: &Path) -> Option<u32> {
    let out = Command::new(pg_ctl).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "pg_ctl (PostgreSQL) 15.18 (Debian ...)"
    text.split_whitespace()
        .nth(2)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn is_root() -> bool {
    // The effective uid, the second field of `Uid:` in /proc/self/status. (A probe file
    // owned by this process raced when two threads started clusters at once: one removed
    // the other's probe, which then read as not root.)
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A free TCP port on loopback (released before PostgreSQL binds it; the window is tiny).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Starts a cluster. With `data_dir`, data lives there and is kept; otherwise it goes in
    /// a fresh temporary directory removed on stop. `fast` turns off fsync (tests).
    pub fn start(data_dir: Option<&Path>, fast: bool) -> Result<Cluster, EmbeddedError> {
        let bin = find_binaries()?;
        let run_as = if is_root() {
            let ok = Command::new("id")
                .args(["-u", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !ok.is_ok_and(|s| s.success()) {
                return Err(EmbeddedError::NoPostgresUser);
            }
            Some("postgres".to_string())
        } else {
            None
        };
        let (base, keep) = match data_dir {
            Some(d) => (d.to_path_buf(), true),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "ark-pg-{}-{}",
                    std::process::id(),
                    rand::random::<u32>()
                ));
                (dir, false)
            }
        };
        std::fs::create_dir_all(&base).map_err(|e| step("creating the data directory", e))?;
        // The base stays traversable so the postgres user can reach its data below it.
        set_mode(&base, 0o755)?;
        let base = base
            .canonicalize()
            .map_err(|e| step("resolving the data directory", e))?;
        let data = base.join("pgdata");
        let port = free_port().map_err(|e| step("finding a free port", e))?;
        let c = Cluster {
            bin,
            base,
            data,
            port,
            run_as,
            keep,
            stopped: false,
        };
        if !c.data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&c.data).map_err(|e| step("creating pgdata", e))?;
            set_mode(&c.data, 0o700)?;
            c.chown(&c.base.clone())?;
            c.run(
                "initdb",
                &[
                    "-D",
                    &c.data.display().to_string(),
                    "-U",
                    "ark",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )?;
        } else {
            c.chown(&c.base.clone())?;
        }
        // Settings are rewritten on each start (port changes); a trailing block wins.
        let conf = c.data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
        if let Some(i) = text.find("\n# ark-apiserver embedded settings") {
            text.truncate(i);
        }
        text.push_str(&settings(port, &c.base, fast));
        std::fs::write(&conf, text).map_err(|e| step("writing postgresql.auto.conf", e))?;
        c.chown(&conf)?;
        c.resume()?;
        Ok(c)
    }

    fn chown(&self, path: &Path) -> Result<(), EmbeddedError> {
        if let Some(user) = &self.run_as {
            let st = Command::new("chown")
                .args(["-R", &format!("{user}:{user}"), &path.display().to_string()])
                .status()
                .map_err(|e| step("chown", e))?;
            if !st.success() {
                return Err(step("chown", format!("exit status {st}")));
            }
        }
        Ok(())
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), EmbeddedError> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| step(tool, e))?;
        if !out.status.success() {
            let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if tool == "pg_ctl" {
                if let Ok(log) = std::fs::read_to_string(self.base.join("postgres.log")) {
                    let tail: Vec<&str> = log.lines().rev().take(10).collect();
                    detail.push_str("\nserver log:\n");
                    detail.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
                }
            }
            return Err(step(tool, detail));
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// A URL for `database` as the cluster's superuser `ark`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://ark@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Stops the server (fast mode) and removes a temporary data directory.
    pub fn stop(&mut self) -> Result<(), EmbeddedError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let r = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.base);
        }
        r
    }

    /// Stops the server but keeps its data and port, for a later [`Cluster::resume`].
    pub fn pause(&self) -> Result<(), EmbeddedError> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts a paused server again.
    pub fn resume(&self) -> Result<(), EmbeddedError> {
        let log = self.base.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Restarts the server in place (same port, same data).
    pub fn restart(&self) -> Result<(), EmbeddedError> {
        let log = self.base.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &log.display().to_string(),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        )
    }

    /// Appends settings to the cluster's configuration; they take effect at the next restart.
    pub fn configure(&self, extra: &str) -> Result<(), EmbeddedError> {
        let conf = self.data.join("postgresql.auto.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(|e| step("reading postgresql.auto.conf", e))?;
        text.push('\n');
        text.push_str(extra);
        text.push('\n');
        std::fs::write(&conf, text).map_err(|e| step("writing postgresql.auto.conf", e))
    }

    /// Makes sure the cluster stops even if this process dies without running destructors
    /// (a test binary exits without dropping statics; a developer may kill -9 `dev`): a
    /// small watcher process stops PostgreSQL when this process is gone.
    pub fn stop_when_process_exits(&self) -> Result<(), EmbeddedError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!(
                "runuser -u {user} -- '{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            ),
            None => format!(
                "'{}' -D '{}' -m immediate stop",
                pg_ctl.display(),
                self.data.display()
            ),
        };
        let cleanup = if self.keep {
            String::new()
        } else {
            format!("; rm -rf '{}'", self.base.display())
        };
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1{cleanup}",
            std::process::id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| step("starting the cluster watcher", e))?;
        Ok(())
    }

    /// Makes a physical standby of this cluster in `into` (pg_basebackup with `-R`, which
    /// writes standby.signal and the connection to this primary), for tests of a
    /// PostgreSQL failover. Start it with [`Cluster::start_standby`].
    pub fn base_backup(&self, into: &Path) -> Result<(), EmbeddedError> {
        std::fs::create_dir_all(into).map_err(|e| step("creating the standby directory", e))?;
        set_mode(into, 0o755)?;
        let data = into.join("pgdata");
        self.chown(into)?;
        self.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "ark",
                "-D",
                &data.display().to_string(),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint: the default (spread) waits most of a minute.
                "--checkpoint=fast",
                "--no-sync",
            ],
        )
    }

    /// Starts a standby made by [`Cluster::base_backup`] in `dir`, streaming from
    /// `primary_port`. Its own settings (port, socket directory) replace the primary's.
    pub fn start_standby(dir: &Path, primary_port: u16) -> Result<Cluster, EmbeddedError> {
        let c = Cluster::start(Some(dir), true)?;
        c.configure(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={primary_port} user=ark'"
        ))?;
        c.restart()?;
        Ok(c)
    }

    /// Stops the server at once, as a crash does (no shutdown checkpoint).
    pub fn crash(&self) -> Result<(), EmbeddedError> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Promotes a standby to primary.
    pub fn promote(&self) -> Result<(), EmbeddedError> {
        self.run(
            "pg_ctl",
            &["-D", &self.data.display().to_string(), "-w", "promote"],
        )
    }

    /// The pg_ctl binary directory in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| step("setting permissions", e))
}
