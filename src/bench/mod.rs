//! `herald bench`: the project's own benchmark.
//!
//! Each scenario starts a fresh `herald serve` child process (this same
//! binary) on loopback with the embedded store and a carrier — the in-process
//! simulated one, or with `--connector smpp` an SMPP connector (one bind,
//! window 64) talking TCP to a `herald smsc-sim` child process — drives it
//! over real HTTP from this process, and reports throughput and latency as
//! text and JSON. The server is a separate process so the figures include
//! everything a real deployment pays: HTTP, JSON, auth, durable commits, and
//! with SMPP the PDU encoding, the socket and the receipt parsing.

mod broadcast;
mod fanout_log;
mod limits;
mod load;
mod otp;
pub mod redis_server;
mod report;
mod route;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub use report::{Report, Summary};

/// Options of `herald bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Which scenarios to run: all, single, batch, hol, otp, broadcast, route
    /// (in-process script calls) and limits (in-process store limit
    /// checks); the last two are not part of all.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Carrier: `sim` (in-process) or `smpp` (TCP to a `herald smsc-sim`
    /// child; in `hol` the cap is the connector's `tps`).
    #[arg(long, default_value = "sim")]
    pub connector: String,
    /// Store of the servers: `embedded` or `redis` (a private redis-server
    /// child with an append-only file, unless --redis-url names one).
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// Servers sharing the workload (needs --store redis); clients spread
    /// over them.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Use this Redis instead of starting one (keys get a per-run prefix).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// AOF fsync policy of the private Redis: `always` (nothing acknowledged
    /// is lost even if Redis crashes), `everysec` or `off`.
    #[arg(long, default_value = "always")]
    pub redis_fsync: String,
    /// Store calls measured in the `limits` scenario.
    #[arg(long, default_value_t = 20_000)]
    pub limit_calls: u32,
    /// Messages sent as single POSTs in the `single` scenario.
    #[arg(long, default_value_t = 50_000)]
    pub single_messages: u32,
    /// Concurrent single-POST clients (keep-alive connections).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Messages sent in batches in the `batch` scenario.
    #[arg(long, default_value_t = 200_000)]
    pub batch_messages: u32,
    /// Messages per batch request.
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: u32,
    /// Marketing messages queued behind the throttled carrier in `hol`.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u32,
    /// Submits per second of the throttled carrier (the connector's `tps`) in `hol` and `otp`.
    #[arg(long, default_value_t = 500)]
    pub throttle_tps: u32,
    /// OTPs issued (and each verified once) in `otp`.
    #[arg(long, default_value_t = 2_000)]
    pub otp_count: u32,
    /// OTPs issued per second in `otp` (a fixed rate).
    #[arg(long, default_value_t = 200)]
    pub otp_rate: u32,
    /// Marketing messages queued behind the throttled carrier in `otp`.
    #[arg(long, default_value_t = 100_000)]
    pub otp_backlog: u32,
    /// Members of the group the `broadcast` scenario sends to (at most
    /// 1,000,000, the largest group).
    #[arg(long, default_value_t = 1_000_000)]
    pub recipients: u32,
    /// Emergency messages measured in `hol`.
    #[arg(long, default_value_t = 200)]
    pub emergency_messages: u32,
    /// Simulated carrier submit → receipt delay, ms.
    #[arg(long, default_value_t = 5)]
    pub dlr_delay_ms: u64,
    /// With `--connector smpp`: start the `herald smsc-sim` child with
    /// TCP_NODELAY. By default it leaves Nagle's algorithm on, as most real
    /// SMSCs do, so the figures include how the connector copes with that.
    #[arg(long)]
    pub sim_nodelay: bool,
    /// Run the servers with the scripts and templates of this directory
    /// (holding scripts/ and templates/, e.g. `.`); without it, none.
    #[arg(long)]
    pub scripts: Option<PathBuf>,
    /// Send `template` + `vars` (app_name, code, ttl_minutes) instead of a
    /// body in `single` and `batch`, e.g. `--template otp` (needs --scripts).
    #[arg(long)]
    pub template: Option<String>,
    /// Calls measured in the `route` scenario.
    #[arg(long, default_value_t = 100_000)]
    pub route_calls: u32,
    /// Also write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the servers' data directories (for inspection).
    #[arg(long)]
    pub keep_data: bool,
}

/// Runs the selected scenarios and prints the report.
///
/// # Errors
/// When a server cannot be started or a scenario cannot complete.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    server::Carrier::parse(&args.connector)?;
    server::StoreChoice::parse(&args.store)?;
    let wanted: Vec<&str> = if args.scenario == "all" {
        vec!["single", "batch", "hol", "otp", "broadcast"]
    } else {
        args.scenario.split(',').map(str::trim).collect()
    };
    let mut report = Report::new();
    for scenario in wanted {
        let summary = match scenario {
            "single" => load::single_posts(&args).await?,
            "batch" => load::batches(&args).await?,
            "hol" => load::head_of_line(&args).await?,
            "otp" => otp::otp(&args).await?,
            "broadcast" => broadcast::broadcast(&args).await?,
            "route" => route::route_calls(&args)?,
            "limits" => limits::limit_calls(&args).await?,
            other => {
                anyhow::bail!(
                    "unknown scenario '{other}' (single, batch, hol, otp, broadcast, route, limits)"
                )
            }
        };
        println!("{}", summary.text());
        report.push(summary);
        // Let the machine settle between scenarios.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let json = report.json();
    println!("{json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json}\n"))?;
    }
    Ok(())
}
