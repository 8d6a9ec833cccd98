//! The [`SmscSim`] handle: starting, the accept loop, run-time controls and shutdown.
//!
//! Tests drive the simulator in-process through this handle; the CLI and the HTTP
//! control endpoint are thin layers over the same methods (via [`SimHandle`]).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, debug, info_span, warn};

use super::{
    SimConfig, SimError,
    faults::SubmitScript,
    mo,
    registry::{Entry, Outbound, Registry},
    scheduler::Scheduler,
    session::{self, Session},
    stats::{Counters, Recorder, SessionCounters, SimStats, SubmittedMessage, bump},
    throttle::Throttle,
};

/// How long a receipt the ESME refused waits before it is delivered again.
pub(super) const RESEND_DELAY: Duration = Duration::from_secs(1);

/// State shared by the accept loop, every session, the receipt timer and the handles.
#[derive(Debug)]
pub(super) struct Shared {
    pub config: SimConfig,
    pub counters: Counters,
    pub registry: Arc<Mutex<Registry>>,
    pub scheduler: Arc<Scheduler>,
    /// Receipts the ESME refused (`deliver_sm_resp` with an error status), due again
    /// after [`RESEND_DELAY`].
    pub resend: Arc<Scheduler>,
    pub throttle: Throttle,
    pub script: SubmitScript,
    pub recorder: Recorder,
    pub refuse_binds: AtomicBool,
    /// While set, every `submit_sm` is refused with `ESME_RINVDSTADR`.
    pub reject_submits: AtomicBool,
    next_session: AtomicU64,
    /// Cancelled by shutdown; every session token is a child of it.
    pub cancel: CancellationToken,
}

impl Shared {
    pub(super) fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cloneable handle to a running simulator, for the control endpoint and other tasks.
/// Same controls as [`SmscSim`] minus shutdown.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

/// A running SMSC simulator. See the module docs of [`crate::smsc_sim`].
#[derive(Debug)]
pub struct SmscSim {
    handle: SimHandle,
    tracker: TaskTracker,
}

impl SmscSim {
    /// Starts serving on `listener` (bind it to port 0 in tests) and returns at once.
    pub async fn start(listener: TcpListener, config: SimConfig) -> SmscSim {
        // A listener whose address cannot be read is unusable; fall back to unspecified
        // rather than failing a constructor that tests call everywhere.
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            registry: Arc::new(Mutex::new(Registry::new(config.pending_receipt_limit))),
            scheduler: Arc::new(Scheduler::new(config.dlr_delay)),
            resend: Arc::new(Scheduler::new(RESEND_DELAY)),
            throttle: Throttle::new(config.throttle_tps),
            script: SubmitScript::default(),
            recorder: Recorder::new(config.record, config.record_limit),
            refuse_binds: AtomicBool::new(false),
            reject_submits: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
            cancel: CancellationToken::new(),
            config,
        });
        let tracker = TaskTracker::new();
        tracker.spawn(
            shared
                .scheduler
                .clone()
                .run(shared.registry.clone(), shared.cancel.clone()),
        );
        tracker.spawn(
            shared
                .resend
                .clone()
                .run(shared.registry.clone(), shared.cancel.clone()),
        );
        tracker.spawn(accept_loop(listener, shared.clone(), tracker.clone()));
        SmscSim {
            handle: SimHandle { shared, local_addr },
            tracker,
        }
    }

    /// A cloneable handle with the same controls, e.g. for the HTTP control endpoint.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.handle.stats()
    }

    /// Every accepted `submit_sm`, oldest first (empty when recording is off).
    pub fn submitted(&self) -> Vec<SubmittedMessage> {
        self.handle.submitted()
    }

    /// Sends a mobile-originated `deliver_sm`; see [`SimHandle::inject_mo`].
    pub async fn inject_mo(&self, from: &str, to: &str, text: &str) -> Result<(), SimError> {
        self.handle.inject_mo(from, to, text).await
    }

    /// Abruptly closes every connection.
    pub fn drop_connections(&self) {
        self.handle.drop_connections();
    }

    /// While set, binds are answered with `ESME_RBINDFAIL`.
    pub fn set_refuse_binds(&self, refuse: bool) {
        self.handle.set_refuse_binds(refuse);
    }

    /// Changes the `submit_sm` rate limit (0 = off) for all sessions, immediately.
    pub fn set_throttle_tps(&self, tps: u32) {
        self.handle.set_throttle_tps(tps);
    }

    /// While set, every `submit_sm` is answered `ESME_RINVDSTADR` (a
    /// permanent error: a carrier that will not take the destination).
    pub fn set_reject_submits(&self, reject: bool) {
        self.handle.set_reject_submits(reject);
    }

    /// Answers the next `submit_sm` (over all sessions, in arrival order) with these
    /// statuses, one each; `ESME_ROK` handles that one normally. See
    /// [`SimHandle::script_submits`].
    pub fn script_submits(&self, statuses: impl IntoIterator<Item = rusmpp::CommandStatus>) {
        self.handle.script_submits(statuses);
    }

    /// Stops listening, closes every session and waits (up to 5 s) for all tasks.
    pub async fn shutdown(self) {
        self.handle.shared.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            warn!("smsc-sim tasks did not stop within 5 s of shutdown");
        }
    }
}

impl SimHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> SimStats {
        let shared = &self.shared;
        let mut stats = shared.counters.snapshot();
        stats.receipts_scheduled = shared.scheduler.len() as u64;
        let registry = shared.registry();
        stats.receipts_pending = registry.parked();
        stats.receipts_dropped = registry.dropped();
        stats.sessions = registry.session_stats();
        stats
    }

    pub fn submitted(&self) -> Vec<SubmittedMessage> {
        self.shared.recorder.all()
    }

    /// The recorded submits to `destination` (digits, as sent).
    pub fn submitted_to(&self, destination: &str) -> Vec<SubmittedMessage> {
        self.shared.recorder.to(destination)
    }

    /// Sends a mobile-originated `deliver_sm` (esm_class 0) to a receiver-capable bind,
    /// round-robin when there are several, and returns once it has been handed to that
    /// session's socket.
    pub async fn inject_mo(&self, from: &str, to: &str, text: &str) -> Result<(), SimError> {
        if self.shared.cancel.is_cancelled() {
            return Err(SimError::ShutDown);
        }
        let pdu = mo::deliver_sm(from, to, text)?;
        let (written, done) = oneshot::channel();
        {
            let mut registry = self.shared.registry();
            let target = registry.mo_target().ok_or(SimError::NoReceiver)?;
            target
                .tx
                .send(Outbound::Mo { pdu, written })
                .map_err(|_| SimError::SessionClosed)?;
        }
        done.await.map_err(|_| SimError::SessionClosed)
    }

    pub fn drop_connections(&self) {
        self.shared.registry().cancel_all();
    }

    pub fn set_refuse_binds(&self, refuse: bool) {
        self.shared.refuse_binds.store(refuse, Ordering::Relaxed);
    }

    pub fn set_throttle_tps(&self, tps: u32) {
        self.shared.throttle.set(tps);
    }

    pub fn set_reject_submits(&self, reject: bool) {
        self.shared.reject_submits.store(reject, Ordering::Relaxed);
    }

    /// Answers the next `submit_sm` with these statuses, in order (fault tests: a bind
    /// state error, a throttled middle part). An error answer takes no message id,
    /// records nothing and schedules no receipt; `ESME_ROK` entries pass one submit
    /// through normally.
    pub fn script_submits(&self, statuses: impl IntoIterator<Item = rusmpp::CommandStatus>) {
        self.shared.script.push(statuses);
    }

    /// Current `submit_sm` rate limit (0 = off).
    pub fn throttle_tps(&self) -> u32 {
        self.shared.throttle.tps()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            () = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => spawn_session(stream, peer, &shared, &tracker),
            Err(error) => {
                // Typically EMFILE; back off instead of spinning, keep serving the rest.
                warn!(%error, "smsc-sim accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn spawn_session(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, tracker: &TaskTracker) {
    if !shared.config.nagle
        && let Err(error) = stream.set_nodelay(true)
    {
        debug!(%error, %peer, "set_nodelay failed");
    }
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let cancel = shared.cancel.child_token();
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(SessionCounters::default());
    shared.registry().insert(
        id,
        Entry {
            peer,
            cancel: cancel.clone(),
            tx,
            counters: counters.clone(),
            bind: None,
        },
    );
    bump(&shared.counters.connections_total);
    bump(&shared.counters.connections_open);
    let span =
        info_span!("smsc_sim_session", session = id, %peer, system_id = tracing::field::Empty);
    let session = Session::new(shared.clone(), id, cancel, rx, counters);
    tracker.spawn(session::run(session, stream).instrument(span));
}
