//! The `ark-apiserver` command.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use ark_apiserver::app;
use ark_apiserver::arkrc::{self, Effective};
use ark_apiserver::auth::user::MASTERS;
use ark_apiserver::config::{
    defaults, AuthMode, Cli, Command, CompletedConfig, ConfigCommand, DevArgs, HelmOutput,
    HelmValuesArgs, ServeArgs, ServeConfig, SlotCommand,
};
use ark_apiserver::embedded::Cluster;
use ark_apiserver::store::connect::{DbConfig, SslMode};
use ark_apiserver::tls;

// glibc's allocator was about 18% of the server's CPU on the create path (BENCHMARKS.md):
// every request allocates and frees JSON trees across worker threads. mimalloc's
// thread-local free lists cut that, and it returns freed memory to the OS more readily.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_arena_eager_commit` (mimalloc.h; the sys crate names only a few
/// options). Committing arenas lazily keeps an idle server at glibc's RSS (about 26 MiB
/// instead of 52); with transparent huge pages off too (the `no_thp` build feature),
/// 200,000 objects take 1.67× their JSON instead of 1.81× (glibc: 1.56×).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

fn tune_allocator() {
    // SAFETY: mi_option_set only stores the value; it is called before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse_recording_sources();
    let level = match &cli.command {
        Command::Serve(s) => s.server.log_level.clone(),
        Command::Dev(d) => d.server.log_level.clone(),
        Command::Migrate(_) | Command::Slot(_) | Command::Config(_) | Command::HelmValues(_) => {
            "info".to_string()
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Migrate(args) => migrate(args).await,
            Command::Dev(args) => dev(args).await,
            Command::Slot(cmd) => slot(cmd).await,
            Command::Config(ConfigCommand::Check(args)) => config_check(&args.db),
            Command::HelmValues(args) => helm_values(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let config = ServeConfig::from_serve_args(&args)
        .map_err(|e| e.to_string())?
        .complete()
        .map_err(|e| e.to_string())?;
    if config.auth.mode == AuthMode::Off {
        tracing::warn!("authentication is off (--auth-mode off): every request is served; do not expose this port beyond the aggregator");
    }
    run_until_signal(config, None).await
}

/// `config check`: the effective configuration with sources, then the verdict.
fn config_check(db: &ark_apiserver::config::DbArgs) -> Result<(), String> {
    let e = Effective::load(db, true).map_err(|e| e.to_string())?;
    print!("{}", e.report());
    e.validate(false).map_err(|e| e.to_string())?;
    println!("\nthe configuration is valid (no connection was attempted)");
    Ok(())
}

/// `helm-values`: the chart's postgresql.* values from the effective configuration.
fn helm_values(args: &HelmValuesArgs) -> Result<(), String> {
    let e = Effective::load(&args.db, true).map_err(|e| e.to_string())?;
    e.validate(true).map_err(|e| e.to_string())?;
    match args.output {
        HelmOutput::Set => print!("{}", e.helm_set_args()),
        HelmOutput::Values => print!("{}", e.helm_values_file()),
    }
    Ok(())
}

async fn migrate(args: ark_apiserver::config::MigrateArgs) -> Result<(), String> {
    let db = arkrc::resolve(&args.db).map_err(|e| e.to_string())?;
    let applied = app::run_migrate_for(&db, &args.publication_name)
        .await
        .map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!(
            "schema is up to date (version {})",
            ark_apiserver::store::migrate::latest_version()
        );
    } else {
        println!(
            "applied migrations {applied:?}; schema is at version {}",
            ark_apiserver::store::migrate::latest_version()
        );
    }
    Ok(())
}

async fn dev(mut args: DevArgs) -> Result<(), String> {
    // The dev server is for this machine only.
    if args.server.bind == defaults::BIND {
        args.server.bind = defaults::DEV_BIND.into();
    }
    let bind = args.server.bind_addr().map_err(|e| e.to_string())?;
    if !bind.ip().is_loopback() {
        return Err(format!(
            "dev serves this machine only: --bind {} is not a loopback address (use serve to listen beyond it)",
            args.server.bind
        ));
    }
    let data_dir = args.data_dir.clone();
    let mut cluster =
        tokio::task::spawn_blocking(move || Cluster::start(data_dir.as_deref(), false))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    eprintln!(
        "PostgreSQL dev cluster running on 127.0.0.1:{} (data in {})",
        cluster.port(),
        cluster.base_dir().display()
    );
    let result = async {
        ensure_database(&cluster.url("postgres"), "ark").await?;
        let mut pg: tokio_postgres::Config = cluster
            .url("ark")
            .replace("?sslmode=disable", "")
            .parse()
            .map_err(|e: tokio_postgres::Error| e.to_string())?;
        pg.application_name("ark-apiserver");
        let mut db = DbConfig::new(pg, SslMode::Disable);
        db.pool_size = 20;
        let path = args
            .kubeconfig
            .clone()
            .unwrap_or_else(|| cluster.base_dir().join("kubeconfig"));
        // A client CA of this run's own, and a certificate in system:masters for the
        // kubeconfig: allowed everything without a kube-apiserver to ask. Anyone else on
        // this machine reaches only the health paths.
        let ca = tls::dev_client_ca().map_err(|e| e.to_string())?;
        let client =
            tls::issue_client_cert(&ca, tls::DEV_USER, Some(MASTERS)).map_err(|e| e.to_string())?;
        let ca_file = cluster.base_dir().join("client-ca.pem");
        std::fs::write(&ca_file, ca.cert_pem())
            .map_err(|e| format!("cannot write {}: {e}", ca_file.display()))?;
        let mut config = ServeConfig::from_dev_args(db, &args).map_err(|e| e.to_string())?;
        config.auth.mode = AuthMode::Delegated;
        config.auth.skip_lookup = true;
        config.auth.client_ca_file = Some(ca_file);
        let config = config.complete().map_err(|e| e.to_string())?;
        run_until_signal(config, Some(DevKubeconfig { path, client })).await
    }
    .await;
    eprintln!("stopping PostgreSQL");
    let stop = tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .map_err(|e| e.to_string())?;
    result?;
    stop.map_err(|e| e.to_string())
}

async fn ensure_database(admin_url: &str, name: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| e.to_string())?;
    }
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// The kubeconfig `dev` writes once the server listens.
struct DevKubeconfig {
    path: std::path::PathBuf,
    client: tls::ClientCert,
}

async fn run_until_signal(
    config: CompletedConfig,
    kubeconfig: Option<DevKubeconfig>,
) -> Result<(), String> {
    let mut running = app::start(config).await.map_err(|e| e.to_string())?;
    if let Some(k) = &kubeconfig {
        app::write_kubeconfig(&k.path, running.addr, &running.cert_pem, &k.client)
            .map_err(|e| format!("cannot write the kubeconfig {}: {e}", k.path.display()))?;
    }
    let init = &mut running.init;
    let mut init_done = false;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            r = &mut *init, if !init_done => {
                init_done = true;
                match r {
                    Ok(Ok(())) => {
                        if let Some(k) = &kubeconfig {
                            eprintln!("\nark-apiserver is serving on https://{}\n\n    export KUBECONFIG={}\n    kubectl api-resources --api-group=ark.mckinsey.com\n", running.addr, k.path.display());
                        }
                    }
                    Ok(Err(e)) => {
                        running.stop().await;
                        return Err(e.to_string());
                    }
                    Err(e) => {
                        running.stop().await;
                        return Err(format!("startup task failed: {e}"));
                    }
                }
            }
            r = async { running.auth.as_mut().expect("guarded").await }, if running.auth.is_some() => {
                let msg = match r {
                    Ok(e) => e.to_string(),
                    Err(e) => format!("the authentication task failed: {e}"),
                };
                running.auth = None;
                running.stop().await;
                return Err(msg);
            }
            r = &mut running.stream => {
                let msg = match r {
                    Ok(e) => e.to_string(),
                    Err(e) => format!("the change stream task failed: {e}"),
                };
                running.stop().await;
                return Err(msg);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// Which replica holds the slot, and every replica that reported lately.
async fn print_replicas(pool: &deadpool_postgres::Pool, slot: &str, active: bool) {
    let store = ark_apiserver::store::Store::new(pool.clone(), 1);
    let fresh = ark_apiserver::replica::FRESH;
    let replicas = match store.replicas_of(slot, fresh).await {
        Ok(r) => r,
        Err(e) => {
            println!(
                "held by:             {} (replicas unknown: {e})",
                if active { "?" } else { "-" }
            );
            return;
        }
    };
    let holder = replicas.iter().find(|r| r.leader);
    println!(
        "held by:             {}",
        match (holder, active) {
            (Some(r), _) => format!("replica {} ({})", r.replica_id, r.address),
            (None, true) => "a session that is not an ark-apiserver replica".into(),
            (None, false) => "-".into(),
        }
    );
    if replicas.is_empty() {
        return;
    }
    println!("replicas:");
    for r in &replicas {
        println!(
            "  {:<24} {:<9} {:<22} applied {} (rv {}), reported {:.1}s ago",
            r.replica_id,
            if r.leader { "leader" } else { "follower" },
            r.address,
            ark_apiserver::pgoutput::Lsn(r.applied_lsn),
            r.applied_rv,
            r.reported_ago
        );
    }
}

async fn slot(cmd: SlotCommand) -> Result<(), String> {
    use ark_apiserver::cdc::slot as s;
    let (SlotCommand::Status(args) | SlotCommand::Drop(args)) = &cmd;
    s::validate_slot_name(&args.names.slot_name)?;
    let db = arkrc::resolve(&args.db).map_err(|e| e.to_string())?;
    let pool = ark_apiserver::store::connect::pool(&db).map_err(|e| e.to_string())?;
    let client = pool
        .get()
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    match cmd {
        SlotCommand::Status(args) => match s::inspect(&client, &args.names.slot_name).await? {
            None => {
                println!("slot {:?} does not exist", args.names.slot_name);
                Ok(())
            }
            Some(i) => {
                let bytes = |b: Option<i64>| {
                    b.map(|b| format!("{b} bytes"))
                        .unwrap_or_else(|| "-".into())
                };
                println!("slot:                {}", i.name);
                println!("type:                {}", i.slot_type);
                println!(
                    "plugin:              {}",
                    i.plugin.as_deref().unwrap_or("-")
                );
                println!("active:              {}", i.active);
                println!(
                    "active pid:          {}",
                    i.active_pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                println!(
                    "wal_status:          {}",
                    i.wal_status.as_deref().unwrap_or("-")
                );
                println!(
                    "restart_lsn:         {}",
                    i.restart_lsn.as_deref().unwrap_or("-")
                );
                println!(
                    "confirmed_flush_lsn: {}",
                    i.confirmed_flush_lsn.as_deref().unwrap_or("-")
                );
                println!("retained WAL:        {}", bytes(i.retained_bytes));
                println!("lag:                 {}", bytes(i.lag_bytes));
                print_replicas(&pool, &args.names.slot_name, i.active).await;
                if i.is_invalidated() {
                    println!("\nthe slot is invalidated: ark-apiserver recreates it at start (watches then relist)");
                }
                Ok(())
            }
        },
        SlotCommand::Drop(args) => {
            let dropped = s::drop_slot(&client, &args.names.slot_name, true).await?;
            let pub_dropped = s::drop_publication(&client, &args.names.publication_name).await?;
            println!(
                "slot {:?}: {}; publication {:?}: {}",
                args.names.slot_name,
                if dropped { "dropped" } else { "did not exist" },
                args.names.publication_name,
                if pub_dropped {
                    "dropped"
                } else {
                    "did not exist"
                }
            );
            Ok(())
        }
    }
}
