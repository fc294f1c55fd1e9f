//! ark-loadgen: drives a real ark-apiserver and, in the same run, the baselines it is
//! judged against (raw PostgreSQL writes, raw logical decoding, etcd), and writes a
//! markdown report with each figure beside its baseline and the published figure.
//!
//! `--smoke` runs every scenario at a tiny scale for CI: it checks that every operation
//! succeeded and every watch event arrived, and asserts nothing about time.

mod api;
mod auth;
mod baseline_etcd;
mod baseline_pg;
mod env;
mod mixed;
mod replicas;
mod report;
mod run;
mod scale;
mod scenarios;
mod stamps;
mod stats;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ark-loadgen",
    about = "Benchmarks ark-apiserver against raw PostgreSQL, raw logical decoding and etcd, in one run"
)]
pub struct Cli {
    /// Tiny scale, for CI: checks that everything works, measures nothing worth reading.
    #[arg(long)]
    pub smoke: bool,
    /// Where the markdown report is written (it is printed too).
    #[arg(long, default_value = "target/bench-report.md")]
    pub output: PathBuf,
    /// Target a running server instead of starting one (needs --database-url for the baselines).
    #[arg(long, env = "ARK_BENCH_SERVER")]
    pub server: Option<String>,
    /// The database the server uses (default: a throwaway cluster started here).
    #[arg(long, env = "ARK_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The ark-apiserver binary (default: the one built next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Objects per create scenario (default 10,000; 200 in smoke mode).
    #[arg(long)]
    pub objects: Option<usize>,
    /// Objects in the scale scenario, written in SQL into a database of its own and served
    /// by a server of its own (default 200,000; 2,000 in smoke mode; 0 skips it).
    #[arg(long)]
    pub scale: Option<usize>,
    /// Skip parts: any of etcd, raw, watch10k, mixed, auth, replicas, scale.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Replicas in the several-replicas scenario (servers of its own, sharing a slot).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ark-loadgen: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run::run(cli)) {
        Ok(report) => {
            let errors = report.errors();
            if errors > 0 {
                eprintln!("ark-loadgen: {errors} operations failed (see the Errors section)");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ark-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
