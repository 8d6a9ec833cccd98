//! `herald smsc-sim`: command-line arguments and the process entry point.
//!
//! The first line on stdout is `smsc-sim listening on <addr>`, so a parent process that
//! passed `--listen 127.0.0.1:0` can read the port. With `--control`, a second line
//! `smsc-sim control on <addr>` follows.

use std::{future::Future, io::Write as _, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing::info;

use super::{SimConfig, SmscSim, control};

/// Arguments of `herald smsc-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SmscSimArgs {
    /// Address to accept SMPP connections on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:2775")]
    pub listen: SocketAddr,
    /// system_id binds must present; without it any bind is accepted.
    #[arg(long)]
    pub system_id: Option<String>,
    /// Password binds must present.
    #[arg(long)]
    pub password: Option<String>,
    /// Milliseconds between accepting a submit_sm and sending its delivery receipt.
    #[arg(long, default_value_t = 100)]
    pub dlr_delay_ms: u64,
    /// Fraction (0.0 to 1.0) of messages whose receipt reports UNDELIV.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// Accepted submit_sm per second over all sessions; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub throttle_tps: u32,
    /// Address of the HTTP control endpoint (MO injection, faults, stats); off if absent.
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// Keep every accepted submit_sm in memory (for debugging; costs memory and time).
    #[arg(long)]
    pub record: bool,
    /// Behave like most real SMSC stacks: leave Nagle's algorithm on (no TCP_NODELAY) and
    /// write each PDU on its own. Shows how an ESME copes with a peer that holds a small
    /// write until its previous one is acknowledged.
    #[arg(long)]
    pub nagle: bool,
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    let fraction: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err(format!("{fraction} is not between 0.0 and 1.0"))
    }
}

impl SmscSimArgs {
    /// The simulator configuration these arguments describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            dlr_delay: Duration::from_millis(self.dlr_delay_ms),
            fail_rate: self.fail_rate,
            throttle_tps: self.throttle_tps,
            record: self.record,
            nagle: self.nagle,
            ..SimConfig::default()
        }
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM, then shuts it down cleanly.
pub async fn run(args: SmscSimArgs) -> anyhow::Result<()> {
    run_until(args, shutdown_signal()).await
}

/// Runs the simulator until `stop` completes (an error from `stop` is returned after a
/// clean shutdown). [`run`] passes the Ctrl-C/SIGTERM wait; tests pass a channel.
pub async fn run_until(
    args: SmscSimArgs,
    stop: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding SMPP listener on {}", args.listen))?;
    let sim = SmscSim::start(listener, args.config()).await;
    announce(&format!("smsc-sim listening on {}", sim.local_addr()))?;

    let control = match args.control {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding control endpoint on {addr}"))?;
            announce(&format!("smsc-sim control on {}", listener.local_addr()?))?;
            let router = control::router(sim.handle());
            let stop = tokio_util::sync::CancellationToken::new();
            let stopped = stop.clone();
            let task = tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped.cancelled_owned())
                    .await
            });
            Some((stop, task))
        }
        None => None,
    };

    let stopped = stop.await;
    info!("smsc-sim shutting down");
    if let Some((stop, task)) = control {
        stop.cancel();
        task.await.context("control endpoint task")??;
    }
    sim.shutdown().await;
    stopped
}

/// Prints a line on stdout and flushes it, so a parent reading a pipe sees it at once.
/// (`println!` rather than a raw handle so test harnesses capture it.)
fn announce(line: &str) -> anyhow::Result<()> {
    println!("{line}");
    std::io::stdout().flush()?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
