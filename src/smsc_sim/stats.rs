//! Counters, their [`SimStats`] snapshot, and the log of accepted `submit_sm`.
//!
//! Counters are relaxed atomics bumped on the hot path (a handful per PDU, uncontended
//! with one session). The log is a bounded `VecDeque` behind a mutex and is skipped
//! entirely when recording is off, which is how benchmarks run.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use serde::Serialize;

/// Which kind of bind a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    /// Whether `submit_sm` is allowed on this bind.
    pub fn can_submit(self) -> bool {
        !matches!(self, BindKind::Receiver)
    }

    /// Whether `deliver_sm` (receipts, MO) may be sent on this bind.
    pub fn can_receive(self) -> bool {
        !matches!(self, BindKind::Transmitter)
    }
}

/// Server-wide counters. Monotonic unless noted.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Currently open TCP connections (goes up and down).
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub binds: AtomicU64,
    pub bind_failures: AtomicU64,
    pub submits: AtomicU64,
    pub parts: AtomicU64,
    pub bytes: AtomicU64,
    pub throttled: AtomicU64,
    pub rejected: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub mo_sent: AtomicU64,
    pub generic_nacks: AtomicU64,
    pub deliver_sm_resps: AtomicU64,
    pub deliver_sm_refused: AtomicU64,
    pub scripted: AtomicU64,
}

/// Per-connection counters, shared between the session task and the registry.
#[derive(Debug, Default)]
pub(super) struct SessionCounters {
    pub submits: AtomicU64,
    pub parts: AtomicU64,
    pub bytes: AtomicU64,
    pub throttled: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub mo_sent: AtomicU64,
}

/// Adds one to a counter; relaxed because counters order nothing.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A point-in-time copy of the simulator's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimStats {
    /// Connections open right now.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Successful binds since start.
    pub binds: u64,
    /// Binds answered with an error status.
    pub bind_failures: u64,
    /// Accepted `submit_sm` (answered with a message id).
    pub submits: u64,
    /// Accepted `submit_sm` that are one segment of a concatenated message (SAR TLVs or a
    /// concatenation UDH).
    pub parts: u64,
    /// Payload bytes of accepted `submit_sm` (`short_message` plus `message_payload`).
    pub bytes: u64,
    /// `submit_sm` answered with `ESME_RTHROTTLED`.
    pub throttled: u64,
    /// `submit_sm` refused for the bind state (not bound, or bound as receiver).
    pub rejected: u64,
    /// Delivery receipts written to a session.
    pub receipts_sent: u64,
    /// Receipts waiting for their `dlr_delay` to pass.
    pub receipts_scheduled: u64,
    /// Receipts parked because no receiver-capable bind of their system_id is connected.
    pub receipts_pending: u64,
    /// Parked receipts dropped because the parking queue was full.
    pub receipts_dropped: u64,
    /// Mobile-originated messages written to a session.
    pub mo_sent: u64,
    /// `generic_nack` sent for garbled or unsupported PDUs.
    pub generic_nacks: u64,
    /// `deliver_sm_resp` received (any status).
    pub deliver_sm_resps: u64,
    /// `deliver_sm_resp` with an error status (a refused receipt is delivered again
    /// a second later).
    pub deliver_sm_refused: u64,
    /// `submit_sm` answered with a status queued by [`crate::smsc_sim::SmscSim::script_submits`].
    pub scripted: u64,
    /// One entry per open connection, in connection order.
    pub sessions: Vec<SessionStats>,
}

/// Counters of one open connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionStats {
    /// Connection number, unique within the simulator.
    pub id: u64,
    pub peer: SocketAddr,
    /// Bound system_id, `None` before a successful bind.
    pub system_id: Option<String>,
    pub bind: Option<BindKind>,
    pub submits: u64,
    pub parts: u64,
    pub bytes: u64,
    pub throttled: u64,
    pub receipts_sent: u64,
    pub mo_sent: u64,
}

impl Counters {
    /// Fills the global part of a snapshot; the caller adds sessions and parked receipts.
    pub(super) fn snapshot(&self) -> SimStats {
        SimStats {
            connections: get(&self.connections_open),
            connections_total: get(&self.connections_total),
            binds: get(&self.binds),
            bind_failures: get(&self.bind_failures),
            submits: get(&self.submits),
            parts: get(&self.parts),
            bytes: get(&self.bytes),
            throttled: get(&self.throttled),
            rejected: get(&self.rejected),
            receipts_sent: get(&self.receipts_sent),
            mo_sent: get(&self.mo_sent),
            generic_nacks: get(&self.generic_nacks),
            deliver_sm_resps: get(&self.deliver_sm_resps),
            deliver_sm_refused: get(&self.deliver_sm_refused),
            scripted: get(&self.scripted),
            ..SimStats::default()
        }
    }
}

impl SessionCounters {
    pub(super) fn snapshot(
        &self,
        id: u64,
        peer: SocketAddr,
        bind: Option<(BindKind, &str)>,
    ) -> SessionStats {
        SessionStats {
            id,
            peer,
            system_id: bind.map(|(_, system_id)| system_id.to_owned()),
            bind: bind.map(|(kind, _)| kind),
            submits: get(&self.submits),
            parts: get(&self.parts),
            bytes: get(&self.bytes),
            throttled: get(&self.throttled),
            receipts_sent: get(&self.receipts_sent),
            mo_sent: get(&self.mo_sent),
        }
    }
}

/// One accepted `submit_sm`, as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubmittedMessage {
    /// The id returned in `submit_sm_resp` (and quoted by the receipt).
    pub message_id: String,
    /// Connection it arrived on (see [`SessionStats::id`]).
    pub session_id: u64,
    /// system_id of that connection's bind.
    pub system_id: String,
    pub source_addr: String,
    pub destination_addr: String,
    pub data_coding: u8,
    pub esm_class: u8,
    pub registered_delivery: u8,
    /// Raw `short_message`, including any UDH.
    pub short_message: Vec<u8>,
    /// `message_payload` TLV (0x0424), if present.
    pub message_payload: Option<Vec<u8>>,
    /// `sar_msg_ref_num` TLV (0x020C), if present.
    pub sar_msg_ref_num: Option<u16>,
    /// `sar_total_segments` TLV (0x020E), if present.
    pub sar_total_segments: Option<u8>,
    /// `sar_segment_seqnum` TLV (0x020F), if present.
    pub sar_segment_seqnum: Option<u8>,
    /// `validity_period` as sent (SMPP time format; empty: the SMSC default).
    pub validity_period: String,
    pub received_at: SystemTime,
}

/// Bounded log of [`SubmittedMessage`]; oldest entries fall off first.
#[derive(Debug)]
pub(super) struct Recorder {
    enabled: bool,
    limit: usize,
    log: Mutex<VecDeque<SubmittedMessage>>,
}

impl Recorder {
    pub(super) fn new(enabled: bool, limit: usize) -> Self {
        Self {
            enabled: enabled && limit > 0,
            limit,
            log: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether callers should bother building [`SubmittedMessage`]s.
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(super) fn push(&self, message: SubmittedMessage) {
        let mut log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        if log.len() >= self.limit {
            log.pop_front();
        }
        log.push_back(message);
    }

    pub(super) fn all(&self) -> Vec<SubmittedMessage> {
        let log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        log.iter().cloned().collect()
    }

    /// The recorded submits to `destination`, without copying the rest.
    pub(super) fn to(&self, destination: &str) -> Vec<SubmittedMessage> {
        let log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        log.iter()
            .filter(|s| s.destination_addr == destination)
            .cloned()
            .collect()
    }
}
