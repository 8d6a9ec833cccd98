//! Figures of a benchmark run, as text and JSON.

use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
}

impl Latency {
    /// Percentiles of `micros` (sorted in place).
    pub fn of(micros: &mut [u64]) -> Latency {
        micros.sort_unstable();
        let at = |q: f64| -> f64 {
            if micros.is_empty() {
                return 0.0;
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            micros[i] as f64 / 1000.0
        };
        Latency {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            samples: micros.len(),
        }
    }

    /// Percentiles of `nanos` (sorted in place), for sub-microsecond calls.
    pub fn of_nanos(nanos: &mut [u64]) -> Latency {
        let l = Latency::of(nanos);
        Latency {
            p50_ms: l.p50_ms / 1000.0,
            p99_ms: l.p99_ms / 1000.0,
            max_ms: l.max_ms / 1000.0,
            samples: l.samples,
        }
    }
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub description: String,
    /// `sim` or `smpp` (empty for in-process scenarios).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub connector: String,
    pub messages: u64,
    /// Accepted → delivered receipt, sustained, messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_to_receipt_per_sec: Option<f64>,
    /// Admission rate alone (HTTP 202s per second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_per_sec: Option<f64>,
    /// Client-side request latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_latency: Option<Latency>,
    /// Emergency accept → submit while the backlog is queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_of_line: Option<Latency>,
    /// `hol`: the marketing backlog asked for and the queue depth
    /// (`herald_queue_depth{class="marketing"}`) around the emergencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
    /// In-process script calls, by kind (`route`, `on_submit`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_calls: Option<std::collections::BTreeMap<String, Latency>>,
    /// In-process store calls, by kind (`limits` scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_calls: Option<std::collections::BTreeMap<String, Latency>>,
    /// `otp`: issue, verify and issue → submit behind the backlog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp: Option<OtpFigures>,
    /// `broadcast`: upload, create, fan-out, completion and cancel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<BroadcastFigures>,
    /// Which store, how many nodes (absent for in-process scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreInfo>,
    /// Peak RSS of the server (summed over nodes).
    pub peak_rss_mib: f64,
    /// Peak RSS of the `herald smsc-sim` process (SMPP runs only).
    #[serde(skip_serializing_if = "is_zero")]
    pub smsc_peak_rss_mib: f64,
    pub data_mib: f64,
    pub seconds: f64,
}

/// The marketing backlog of `hol`, read from the server's metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    /// `--backlog`.
    pub requested: u64,
    /// Queued right before the first emergency message was sent.
    pub queued_before_emergencies: u64,
    /// Queued right after the last one was accepted.
    pub queued_after_emergencies: u64,
}

/// The figures of the `otp` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct OtpFigures {
    /// OTPs issued (each verified once).
    pub issued: u64,
    /// `--otp-rate`: issues per second asked for.
    pub rate_per_sec: f64,
    /// Issues per second the bench kept up (first to last request start).
    pub achieved_rate_per_sec: f64,
    /// Which code the verifications sent: `right` (read from the SMS the
    /// SMSC simulator received, `--connector smpp`) or `wrong` (in-process
    /// carrier; a wrong code costs the same argon2id check as the right one).
    pub verify_code: String,
    /// Verifications that answered `valid: true`.
    pub approved: u64,
    /// `POST /v1/otp` round trip.
    pub issue_latency: Latency,
    /// `POST /v1/otp/verify` round trip.
    pub verify_latency: Latency,
    /// Start of `POST /v1/otp` → the code's SMS submitted to the carrier
    /// (its message's `submitted_at`).
    pub issue_to_submit: Latency,
    /// `--otp-backlog`.
    pub backlog_requested: u64,
    /// Marketing queued right before the first OTP was issued.
    pub queued_before_first_otp: u64,
    /// Marketing queued right after the last OTP was verified.
    pub queued_after_last_otp: u64,
}

/// The figures of the `broadcast` scenario. Times "since create" start
/// at the start of `POST /v1/broadcasts`; those found by polling are late
/// by at most one poll.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastFigures {
    /// `--recipients`: members of the group.
    pub recipients: u64,
    /// `PUT /v1/groups/{name}` (text/csv) round trip.
    pub upload_seconds: f64,
    /// `POST /v1/broadcasts` round trip (→ 201).
    pub create_ms: f64,
    /// Poll period of `GET /v1/broadcasts/{id}` until the first submit.
    pub poll_ms: f64,
    /// Since create: the first message submitted (polled).
    pub first_submit_ms: f64,
    /// Since create: nothing queued any more (polled).
    pub all_submitted_seconds: f64,
    /// Since create: status `completed` (polled).
    pub completed_seconds: f64,
    /// `recipients / all_submitted_seconds`: messages leaving `queued`
    /// (fan-out and carrier together).
    pub leaving_queued_per_sec: f64,
    /// The same over the fastest second of polls.
    pub peak_leaving_queued_per_sec: f64,
    /// Time between polls that found nothing ready for the carrier
    /// (`herald_queue_depth` 0) while messages were still to be sent.
    pub starved_seconds: f64,
    /// About once a second from the first submit until nothing is queued:
    /// `[seconds since create, queued (counter), ready (queue depth)]`.
    pub timeline: Vec<[f64; 3]>,
    /// Server side, from the fan-out's chunk log: chunks written.
    pub fanout_chunks: u64,
    /// Recipients those chunks turned into messages (or refused).
    pub fanout_recipients: u64,
    /// Sum of the chunks' own timings (audience read + build + write).
    pub fanout_write_seconds: f64,
    /// `fanout_recipients / fanout_write_seconds`.
    pub fanout_per_write_sec: f64,
    /// First to last chunk record, as the bench read them.
    pub fanout_wall_seconds: f64,
    /// One chunk's timing.
    pub fanout_chunk: Latency,
    /// The counters when completed.
    pub counters: super::broadcast::Counters,
    /// Peak RSS of the server once the group was stored.
    pub peak_rss_after_upload_mib: f64,
    /// Peak RSS once the first broadcast completed.
    pub peak_rss_after_broadcast_mib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelFigures>,
}

/// A second broadcast to the same group, canceled while sending.
#[derive(Debug, Clone, Serialize)]
pub struct CancelFigures {
    /// Whether it was still sending when canceled (a small group on a
    /// fast carrier may complete first: the call answers 409).
    pub took_effect: bool,
    /// Its create → the cancel call.
    pub after_ms: f64,
    /// Submitted or beyond right before the cancel.
    pub sent_before_cancel: u64,
    /// `POST /v1/broadcasts/{id}/cancel` round trip.
    pub cancel_call_ms: f64,
    /// The cancel's answer.
    pub answered: super::broadcast::Counters,
    /// Its counters add up to the group's size.
    pub answered_adds_up: bool,
    /// Cancel → nothing queued or awaiting a receipt.
    pub settle_seconds: f64,
    pub settled: super::broadcast::Counters,
    pub settled_adds_up: bool,
}

impl BroadcastFigures {
    fn text(&self) -> String {
        let c = &self.counters;
        let mut s = format!(
            "\n   group upload (text/csv, {} members): {:.2} s\
             \n   create -> 201: {:.1} ms   create -> first submit: {:.1} ms (polled every {:.0} ms)\
             \n   create -> all submitted (queued 0): {:.2} s   -> completed: {:.2} s (polled)\
             \n   leaving queued: {:.0} msg/s over the run, {:.0} msg/s in the fastest second; \
             nothing ready to send for {:.1} s of it (polled)\
             \n   fan-out (server log): {} recipients in {} chunks, {:.2} s of chunk time = {:.0} recipients/s; \
             first -> last chunk {:.2} s; chunk p50 {:.1} ms p99 {:.1} ms max {:.1} ms\
             \n   counters: {} total, {} delivered, {} failed, {} expired, {} canceled, {} refused ({})\
             \n   server peak RSS: {:.0} MiB after the upload, {:.0} MiB after the broadcast",
            self.recipients,
            self.upload_seconds,
            self.create_ms,
            self.first_submit_ms,
            self.poll_ms,
            self.all_submitted_seconds,
            self.completed_seconds,
            self.leaving_queued_per_sec,
            self.peak_leaving_queued_per_sec,
            self.starved_seconds,
            self.fanout_recipients,
            self.fanout_chunks,
            self.fanout_write_seconds,
            self.fanout_per_write_sec,
            self.fanout_wall_seconds,
            self.fanout_chunk.p50_ms,
            self.fanout_chunk.p99_ms,
            self.fanout_chunk.max_ms,
            c.total,
            c.delivered,
            c.failed,
            c.expired,
            c.canceled,
            c.refused,
            c.status,
            self.peak_rss_after_upload_mib,
            self.peak_rss_after_broadcast_mib
        );
        if let Some(k) = self.cancel.as_ref().filter(|k| !k.took_effect) {
            s.push_str(&format!(
                "\n   cancel after {:.0} ms: too late, the second broadcast had {}",
                k.after_ms, k.answered.status
            ));
        }
        if let Some(k) = self.cancel.as_ref().filter(|k| k.took_effect) {
            let a = &k.settled;
            s.push_str(&format!(
                "\n   cancel after {:.0} ms ({} sent): call {:.1} ms; settled {:.2} s later: \
                 {} delivered, {} failed, {} canceled, {} queued of {} ({})",
                k.after_ms,
                k.sent_before_cancel,
                k.cancel_call_ms,
                k.settle_seconds,
                a.delivered,
                a.failed,
                a.canceled,
                a.queued,
                a.total,
                if k.answered_adds_up && k.settled_adds_up {
                    "counters add up"
                } else {
                    "COUNTERS DO NOT ADD UP"
                }
            ));
        }
        s
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Summary {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!(
            "== {} — {}\n   messages: {}   wall: {:.1}s   peak RSS: {:.0} MiB   data: {:.0} MiB",
            self.scenario,
            self.description,
            self.messages,
            self.seconds,
            self.peak_rss_mib,
            self.data_mib
        );
        if self.smsc_peak_rss_mib > 0.0 {
            s.push_str(&format!(
                "   smsc-sim peak RSS: {:.0} MiB",
                self.smsc_peak_rss_mib
            ));
        }
        if let Some(store) = &self.store {
            s.push('\n');
            s.push_str(&store.text());
        }
        if let Some(r) = self.accept_per_sec {
            s.push_str(&format!("\n   accepted:          {r:>10.0} msg/s"));
        }
        if let Some(r) = self.accept_to_receipt_per_sec {
            s.push_str(&format!(
                "\n   accept -> receipt: {r:>10.0} msg/s (sustained)"
            ));
        }
        if let Some(l) = &self.admission_latency {
            s.push_str(&format!(
                "\n   admission latency: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} requests)",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            ));
        }
        if let Some(l) = &self.head_of_line {
            s.push_str(&format!(
                "\n   emergency head-of-line (accept -> submit): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} messages)",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            ));
        }
        if let Some(b) = &self.backlog {
            s.push_str(&format!(
                "\n   marketing queued: {} when the emergencies started, {} after the last (requested {})",
                b.queued_before_emergencies, b.queued_after_emergencies, b.requested
            ));
        }
        if let Some(o) = &self.otp {
            s.push_str(&o.text());
        }
        if let Some(b) = &self.broadcast {
            s.push_str(&b.text());
        }
        for (call, l) in self.store_calls.iter().flatten() {
            s.push_str(&format!(
                "\n   {call}: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} calls)",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            ));
        }
        for (call, l) in self.script_calls.iter().flatten() {
            s.push_str(&format!(
                "\n   {call}: p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs  ({} calls)",
                l.p50_ms * 1000.0,
                l.p99_ms * 1000.0,
                l.max_ms * 1000.0,
                l.samples
            ));
        }
        s
    }
}

impl OtpFigures {
    fn text(&self) -> String {
        let line = |name: &str, l: &Latency, what: &str| {
            format!(
                "\n   {name}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} {what})",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            )
        };
        let mut s = format!(
            "\n   OTPs: {} issued at {:.0}/s (asked {:.0}/s), each verified once with the {} code, {} approved",
            self.issued,
            self.achieved_rate_per_sec,
            self.rate_per_sec,
            self.verify_code,
            self.approved
        );
        s.push_str(&line(
            "issue (POST /v1/otp)",
            &self.issue_latency,
            "requests",
        ));
        s.push_str(&line(
            "verify (POST /v1/otp/verify)",
            &self.verify_latency,
            "requests",
        ));
        s.push_str(&line("issue -> submit_sm", &self.issue_to_submit, "OTPs"));
        s.push_str(&format!(
            "\n   marketing queued: {} when the first OTP was issued, {} after the last (requested {})",
            self.queued_before_first_otp, self.queued_after_last_otp, self.backlog_requested
        ));
        s
    }
}

/// The store a scenario ran on.
#[derive(Debug, Clone, Serialize)]
pub struct StoreInfo {
    /// `embedded` or `redis`.
    pub kind: String,
    pub nodes: usize,
    /// AOF fsync policy of the private Redis (`always`, `everysec`, `off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_fsync: Option<String>,
    /// Peak RSS of the private `redis-server`.
    #[serde(skip_serializing_if = "is_zero")]
    pub redis_peak_rss_mib: f64,
}

impl StoreInfo {
    pub(super) fn of(args: &super::BenchArgs, server: &super::server::BenchServer) -> Option<Self> {
        let redis = args.store == "redis";
        Some(StoreInfo {
            kind: args.store.clone(),
            nodes: args.nodes,
            redis_fsync: (redis && args.redis_url.is_none()).then(|| args.redis_fsync.clone()),
            redis_peak_rss_mib: server.redis_peak_rss_mib(),
        })
    }

    fn text(&self) -> String {
        let mut s = format!("   store: {}", self.kind);
        if self.nodes > 1 {
            s.push_str(&format!(", {} nodes", self.nodes));
        }
        if let Some(f) = &self.redis_fsync {
            s.push_str(&format!(" (appendfsync {f})"));
        }
        if self.redis_peak_rss_mib > 0.0 {
            s.push_str(&format!(
                "   redis-server peak RSS: {:.0} MiB",
                self.redis_peak_rss_mib
            ));
        }
        s
    }
}

/// Every scenario of a run plus where it ran.
#[derive(Debug, Serialize)]
pub struct Report {
    pub herald_version: &'static str,
    pub machine: Machine,
    pub scenarios: Vec<Summary>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
}

impl Report {
    pub fn new() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Report {
            herald_version: env!("CARGO_PKG_VERSION"),
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(1, usize::from),
                cpu_model: cpuinfo
                    .lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                    .unwrap_or_default(),
                memory_gib: meminfo
                    .lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                    .map_or(0.0, |kb| kb / (1024.0 * 1024.0)),
            },
            scenarios: Vec::new(),
        }
    }

    pub fn push(&mut self, s: Summary) {
        self.scenarios.push(s);
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Default for Report {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let l = Latency::of(&mut v);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
    }
}
