//! Prometheus metrics: one registry per gateway (so test servers in one
//! process never share counters), rendered as text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::Class;
use crate::store::QueueDepths;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabel {
    pub connector: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScriptLabel {
    /// `scripts/route.rhai`, `templates/otp.es.rhai`: bounded by the files.
    pub script: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// `dispatcher/<connector>`, `webhooks`, …: bounded by the connectors.
    pub task: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric Herald exports.
pub struct Metrics {
    registry: Registry,
    accepted: Family<ClassLabel, Counter>,
    submitted: Family<ClassLabel, Counter>,
    delivered: Family<ClassLabel, Counter>,
    failed: Family<ClassLabel, Counter>,
    expired: Family<ClassLabel, Counter>,
    rejected: Family<CodeLabel, Counter>,
    rate_limited: Family<ClassLabel, Counter>,
    webhooks: Family<CodeLabel, Counter>,
    inbound: Family<CodeLabel, Counter>,
    submit_errors: Family<ConnectorLabel, Counter>,
    script_errors: Family<ScriptLabel, Counter>,
    task_panics: Family<TaskLabel, Counter>,
    scripts_broken: Gauge,
    script_reloads: Counter,
    auth_verifies: Family<CodeLabel, Counter>,
    otp_events: Family<CodeLabel, Counter>,
    otp_refused: Family<CodeLabel, Counter>,
    otp_verify_seconds: Histogram,
    queue_depth: Family<ClassLabel, Gauge>,
    retry_depth: Gauge,
    admission_seconds: Histogram,
    accept_to_submit_seconds: HistogramFamily<ClassLabel>,
    audit_write_failures: Counter,
    broadcast_fanned: Counter,
    broadcast_refused: Counter,
    broadcast_fanout_seconds: Histogram,
}

fn class_label(class: Class) -> ClassLabel {
    ClassLabel {
        class: class.as_str(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let m = Metrics {
            accepted: Family::default(),
            submitted: Family::default(),
            delivered: Family::default(),
            failed: Family::default(),
            expired: Family::default(),
            rejected: Family::default(),
            rate_limited: Family::default(),
            webhooks: Family::default(),
            inbound: Family::default(),
            submit_errors: Family::default(),
            script_errors: Family::default(),
            task_panics: Family::default(),
            scripts_broken: Gauge::default(),
            script_reloads: Counter::default(),
            auth_verifies: Family::default(),
            otp_events: Family::default(),
            otp_refused: Family::default(),
            otp_verify_seconds: latency_histogram(),
            queue_depth: Family::default(),
            retry_depth: Gauge::default(),
            admission_seconds: latency_histogram(),
            accept_to_submit_seconds: Family::new_with_constructor(latency_histogram),
            audit_write_failures: Counter::default(),
            broadcast_fanned: Counter::default(),
            broadcast_refused: Counter::default(),
            broadcast_fanout_seconds: latency_histogram(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_accepted",
            "Messages accepted (stored and queued)",
            m.accepted.clone(),
        );
        registry.register(
            "messages_submitted",
            "Messages the carrier accepted",
            m.submitted.clone(),
        );
        registry.register(
            "messages_delivered",
            "Messages with a delivered receipt",
            m.delivered.clone(),
        );
        registry.register(
            "messages_failed",
            "Messages that failed (carrier receipt or permanent error)",
            m.failed.clone(),
        );
        registry.register(
            "messages_expired",
            "Messages whose validity ran out before submission",
            m.expired.clone(),
        );
        registry.register(
            "requests_rejected",
            "Messages refused at admission, by error code",
            m.rejected.clone(),
        );
        registry.register(
            "rate_limited",
            "Messages refused by a per-recipient limit, by class",
            m.rate_limited.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook attempts by result (delivered, retried, given_up, dropped, refused_destination)",
            m.webhooks.clone(),
        );
        registry.register(
            "inbound_messages",
            "Inbound messages by action (message, opt_out, opt_in)",
            m.inbound.clone(),
        );
        registry.register(
            "submit_errors",
            "Submits that failed, by connector and kind (temporary, throttled, permanent, expired)",
            m.submit_errors.clone(),
        );
        registry.register(
            "script_errors",
            "Script and template failures, by file and kind (compile, runtime, operations, timeout, call_depth, size, decision)",
            m.script_errors.clone(),
        );
        registry.register(
            "task_panics",
            "Panics of supervised tasks (dispatchers, recorders, webhooks, maintenance), by task",
            m.task_panics.clone(),
        );
        registry.register(
            "auth_verifies",
            "argon2 verifications of API key secrets, by result (ok, wrong); cached answers are not counted",
            m.auth_verifies.clone(),
        );
        registry.register(
            "otp",
            "OTP events (issued, replaced, approved, wrong_code, max_attempts, expired, canceled, prefix_blocked)",
            m.otp_events.clone(),
        );
        registry.register(
            "otp_refused",
            "OTP requests refused by the SMS-pumping defence, by error code",
            m.otp_refused.clone(),
        );
        registry.register(
            "otp_verify_seconds",
            "Time to answer an OTP verification",
            m.otp_verify_seconds.clone(),
        );
        registry.register(
            "scripts_broken",
            "Script and template files that currently fail to compile (their previous version, if any, still serves)",
            m.scripts_broken.clone(),
        );
        registry.register(
            "script_reloads",
            "Loads of the script and template directories (the first at start included)",
            m.script_reloads.clone(),
        );
        registry.register(
            "queue_depth",
            "Messages ready to send, by class",
            m.queue_depth.clone(),
        );
        registry.register(
            "retry_depth",
            "Messages waiting for a retry",
            m.retry_depth.clone(),
        );
        registry.register(
            "admission_seconds",
            "Time to validate and durably store a request",
            m.admission_seconds.clone(),
        );
        registry.register(
            "accept_to_submit_seconds",
            "Time from acceptance to submit, by class",
            m.accept_to_submit_seconds.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit entries that could not be written (the action they record stood)",
            m.audit_write_failures.clone(),
        );
        registry.register(
            "broadcast_fanned",
            "Broadcast recipients turned into queued messages",
            m.broadcast_fanned.clone(),
        );
        registry.register(
            "broadcast_refused",
            "Broadcast recipients refused (opt-outs, limits, scripts): counted, not sent",
            m.broadcast_refused.clone(),
        );
        registry.register(
            "broadcast_fanout_seconds",
            "Time of one fan-out write (a chunk of recipients made queued messages)",
            m.broadcast_fanout_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One fan-out write: `created` messages queued, `refused` recipients
    /// refused, in `secs`.
    pub fn broadcast_fanned_out(&self, created: u64, refused: u64, secs: f64) {
        self.broadcast_fanned.inc_by(created);
        self.broadcast_refused.inc_by(refused);
        self.broadcast_fanout_seconds.observe(secs);
    }

    /// An audit entry was lost to a store failure.
    pub fn audit_write_failed(&self) {
        self.audit_write_failures.inc();
    }

    pub fn accepted(&self, class: Class, n: u64) {
        self.accepted.get_or_create(&class_label(class)).inc_by(n);
    }

    pub fn submitted(&self, class: Class, accept_to_submit_secs: f64) {
        let label = class_label(class);
        self.submitted.get_or_create(&label).inc();
        self.accept_to_submit_seconds
            .get_or_create(&label)
            .observe(accept_to_submit_secs);
    }

    pub fn delivered(&self, class: Class) {
        self.delivered.get_or_create(&class_label(class)).inc();
    }

    pub fn failed(&self, class: Class) {
        self.failed.get_or_create(&class_label(class)).inc();
    }

    pub fn expired(&self, class: Class) {
        self.expired.get_or_create(&class_label(class)).inc();
    }

    pub fn rejected(&self, code: &'static str) {
        self.rejected.get_or_create(&CodeLabel { code }).inc();
    }

    pub fn rate_limited(&self, class: Class) {
        self.rate_limited.get_or_create(&class_label(class)).inc();
    }

    pub fn webhook(&self, result: &'static str) {
        self.webhooks
            .get_or_create(&CodeLabel { code: result })
            .inc();
    }

    pub fn inbound(&self, action: &'static str) {
        self.inbound
            .get_or_create(&CodeLabel { code: action })
            .inc();
    }

    pub fn submit_error(&self, connector: &str, kind: &'static str) {
        self.submit_errors
            .get_or_create(&ConnectorLabel {
                connector: connector.to_string(),
                kind,
            })
            .inc();
    }

    /// Counts a script or template failure.
    /// A supervised task panicked (see [`crate::supervise`]).
    pub fn task_panic(&self, task: &str) {
        self.task_panics
            .get_or_create(&TaskLabel {
                task: task.to_string(),
            })
            .inc();
    }

    pub fn script_error(&self, script: &str, kind: &'static str) {
        self.script_errors
            .get_or_create(&ScriptLabel {
                script: script.to_string(),
                kind,
            })
            .inc();
    }

    /// Counts one argon2 verification of an API key secret.
    pub fn auth_verify(&self, result: &'static str) {
        self.auth_verifies
            .get_or_create(&CodeLabel { code: result })
            .inc();
    }

    /// Counts one OTP event.
    pub fn otp(&self, event: &'static str) {
        self.otp_events
            .get_or_create(&CodeLabel { code: event })
            .inc();
    }

    /// Counts one OTP request refused by the pumping defence.
    pub fn otp_refused(&self, code: &'static str) {
        self.otp_refused.get_or_create(&CodeLabel { code }).inc();
    }

    pub fn otp_verify_latency(&self, secs: f64) {
        self.otp_verify_seconds.observe(secs);
    }

    /// Counts one load of the script and template directories.
    pub fn script_reloaded(&self) {
        self.script_reloads.inc();
    }

    /// Sets how many script files fail to compile right now.
    pub fn set_scripts_broken(&self, n: usize) {
        self.scripts_broken
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn admission_latency(&self, secs: f64) {
        self.admission_seconds.observe(secs);
    }

    /// Counts a message that reached a final status.
    pub fn finished(&self, m: &crate::model::Message) {
        use crate::model::Status;
        match m.status {
            Status::Delivered => self.delivered(m.class),
            Status::Failed => self.failed(m.class),
            Status::Expired => self.expired(m.class),
            _ => {}
        }
    }

    /// The Prometheus text exposition, with gauges read at this instant.
    pub fn render(&self, depths: QueueDepths, retry_depth: u64) -> String {
        for class in Class::ALL {
            self.queue_depth
                .get_or_create(&class_label(class))
                .set(i64::try_from(depths[class.index()]).unwrap_or(i64::MAX));
        }
        self.retry_depth
            .set(i64::try_from(retry_depth).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_includes_counters_and_depths() {
        let m = Metrics::new();
        m.accepted(Class::Otp, 3);
        m.submitted(Class::Otp, 0.002);
        let text = m.render([1, 2, 3, 4], 5);
        assert!(
            text.contains("herald_messages_accepted_total{class=\"otp\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("herald_queue_depth{class=\"marketing\"} 4"),
            "{text}"
        );
        assert!(text.contains("herald_retry_depth 5"), "{text}");
        assert!(
            text.contains("herald_accept_to_submit_seconds_bucket"),
            "{text}"
        );
    }
}
