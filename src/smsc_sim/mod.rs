//! `smsc_sim`: a standalone SMPP 3.4 SMSC simulator.
//!
//! This is the carrier stand-in behind `herald smsc-sim`, the integration tests and the
//! benchmarks. It accepts real TCP connections, answers binds, `submit_sm`,
//! `enquire_link` and `unbind`, sends delivery receipts after a fixed delay, can inject
//! mobile-originated messages and can be told to misbehave (drop connections, refuse
//! binds, throttle) so that Herald's fault handling can be exercised.
//!
//! PDUs are framed and encoded by `rusmpp`'s tokio codec only; nothing here hand-encodes a
//! PDU.
//!
//! In-process (tests):
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use herald::smsc_sim::{SimConfig, SmscSim};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = SmscSim::start(listener, SimConfig::default()).await;
//! // ... point an ESME at sim.local_addr(), then inspect sim.stats() / sim.submitted() ...
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//! Out of process: `herald smsc-sim --listen 127.0.0.1:0 --control 127.0.0.1:8025` (see
//! [`cli::SmscSimArgs`]); throughput check: `cargo run --release --example smsc_sim_load`.
//!
//! Layout, one job per file:
//! - [`server`]: the [`SmscSim`] handle, the accept loop and the run-time controls.
//! - `session`: one task per TCP connection, the bind state machine and PDU handling.
//! - `submit`: what an accepted `submit_sm` produces (id, counters, log entry, receipt).
//! - `codec`: wraps rusmpp's codec so a garbled PDU becomes a `generic_nack`, not a hang-up.
//! - `registry`: live connections, receiver lookup and receipts parked for absent binds.
//! - `scheduler`: the single FIFO timer that releases receipts after the configured delay.
//! - `receipt`: receipt text and the receipt `deliver_sm`.
//! - `mo`: mobile-originated `deliver_sm` construction (GSM 7-bit or UCS-2).
//! - `throttle`: the run-time adjustable `governor` limiter.
//! - `faults`: scripted `submit_sm` answers for fault tests.
//! - `stats`: counters, [`SimStats`] snapshots and the [`SubmittedMessage`] log.
//! - [`control`]: the optional HTTP control endpoint.
//! - [`cli`]: `herald smsc-sim` arguments and entry point.

pub mod cli;
mod codec;
pub mod control;
mod faults;
mod mo;
mod receipt;
mod registry;
mod scheduler;
pub mod server;
mod session;
mod stats;
mod submit;
mod throttle;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use server::{SimHandle, SmscSim};
pub use stats::{BindKind, SessionStats, SimStats, SubmittedMessage};

/// Default bound of the submitted-message log and of the parked-receipt queue.
pub const DEFAULT_QUEUE_LIMIT: usize = 1_000_000;

/// How the simulator behaves. Everything here can be set from the command line.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `system_id` a bind must present; `None` accepts any (and ignores the password).
    pub system_id: Option<String>,
    /// Password a bind must present when `system_id` is set; `None` accepts any.
    pub password: Option<String>,
    /// Time between accepting a `submit_sm` and sending its delivery receipt.
    pub dlr_delay: Duration,
    /// Fraction (0.0..=1.0) of messages whose receipt says `UNDELIV`. Deterministic per
    /// message id, so a rerun fails the same messages.
    pub fail_rate: f64,
    /// Accepted `submit_sm` per second over all sessions; 0 disables throttling.
    pub throttle_tps: u32,
    /// Keep every accepted `submit_sm` for [`SmscSim::submitted`]. Tests want it;
    /// benchmarks turn it off so it costs nothing.
    pub record: bool,
    /// Bound of the submitted-message log (oldest entries dropped first).
    pub record_limit: usize,
    /// Bound of receipts parked while no receiver-capable bind is present (oldest dropped
    /// first, counted in [`SimStats::receipts_dropped`]).
    pub pending_receipt_limit: usize,
    /// Behave like most real SMSC stacks (and Node or Java ones): leave Nagle's algorithm
    /// on and write each PDU as it is produced, instead of setting `TCP_NODELAY` and
    /// batching responses. Such a peer sends a small write only once its previous one is
    /// acknowledged, so an ESME that reads a response and writes nothing back gets the
    /// next ones a delayed-ACK timer (40 ms) late; the default behaviour hides that.
    pub nagle: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            system_id: None,
            password: None,
            dlr_delay: Duration::from_millis(100),
            fail_rate: 0.0,
            throttle_tps: 0,
            record: true,
            record_limit: DEFAULT_QUEUE_LIMIT,
            pending_receipt_limit: DEFAULT_QUEUE_LIMIT,
            nagle: false,
        }
    }
}

/// Errors of the simulator's run-time API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No transceiver or receiver is bound, so there is nobody to deliver to.
    #[error("no receiver-capable bind is connected")]
    NoReceiver,
    /// The session chosen for delivery went away before the PDU was written.
    #[error("the session closed before the deliver_sm was written")]
    SessionClosed,
    /// An address is not a valid SMPP address (1..=20 ASCII characters, no NUL).
    #[error("invalid address {0:?}: must be 1 to 20 ASCII characters")]
    InvalidAddress(String),
    /// The text cannot be encoded as GSM 7-bit nor as UCS-2 (e.g. characters outside the
    /// Basic Multilingual Plane), or is too long for one `deliver_sm`.
    #[error("text cannot be encoded in one deliver_sm: {0}")]
    Unencodable(String),
    /// The simulator has been shut down.
    #[error("the simulator is shut down")]
    ShutDown,
}
