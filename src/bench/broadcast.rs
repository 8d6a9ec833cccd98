//! The `broadcast` scenario: one group of `--recipients` members, one live
//! broadcast to it without approval, and a second one canceled after a
//! second.
//!
//! Measured from the client: the group upload, create → 201, create →
//! first submit and create → all submitted / completed. Herald pushes no
//! event for a submit, so those are found by polling `GET
//! /v1/broadcasts/{id}` (every [`FIRST_POLL`] until the first submit, then
//! every [`POLL`]); each figure is late by at most one poll. From the
//! server: the fan-out's own per-chunk timings, read from its log
//! ([`super::fanout_log`]), which separate turning recipients into messages
//! from the carrier sending them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::BenchArgs;
use super::fanout_log::{FanOutLog, TRACE};
use super::load::{WINDOW, carrier, client, queue_depth};
use super::report::{BroadcastFigures, CancelFigures, Latency, Summary};
use super::server::{BenchServer, Carrier};
use crate::text::test_number;

/// The class of the broadcasts (the API's default).
const CLASS: &str = "emergency";
/// The group every broadcast of the scenario goes to.
const GROUP: &str = "bench-audience";
/// Poll period until the first submit.
const FIRST_POLL: Duration = Duration::from_millis(5);
/// Poll period afterwards.
const POLL: Duration = Duration::from_millis(50);
/// How long the second broadcast sends before it is canceled.
const CANCEL_AFTER: Duration = Duration::from_secs(1);
/// Longest wait for the canceled broadcast's in-flight messages to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The counters of `GET /v1/broadcasts/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub status: String,
    pub total: u64,
    pub queued: u64,
    pub submitted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    pub canceled: u64,
    pub refused: u64,
}

impl Counters {
    /// Messages handed to the carrier (submitted or beyond).
    fn sent(&self) -> u64 {
        self.submitted + self.delivered + self.failed
    }

    /// Whether `total` is the sum of the statuses, as documented.
    pub fn adds_up(&self) -> bool {
        self.total
            == self.queued
                + self.submitted
                + self.delivered
                + self.failed
                + self.expired
                + self.canceled
                + self.refused
    }
}

async fn counters(
    client: &reqwest::Client,
    server: &BenchServer,
    id: &str,
) -> anyhow::Result<Counters> {
    let r = client
        .get(format!("{}/v1/broadcasts/{id}", server.base))
        .bearer_auth(&server.key)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status != 200 {
        bail!("GET /v1/broadcasts/{id} answered {status}: {v}");
    }
    Ok(serde_json::from_value(v)?)
}

/// One number per line: test numbers `0..n`.
fn group_csv(n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 13);
    for i in 0..n {
        s.push_str(&test_number(i).to_string());
        s.push('\n');
    }
    s
}

/// Uploads the group; returns how long it took.
async fn upload(client: &reqwest::Client, server: &BenchServer, n: u32) -> anyhow::Result<f64> {
    let body = group_csv(n);
    let t = Instant::now();
    let r = client
        .put(format!("{}/v1/groups/{GROUP}", server.base))
        .bearer_auth(&server.key)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let seconds = t.elapsed().as_secs_f64();
    if status != 200 {
        bail!("PUT /v1/groups/{GROUP} answered {status}: {v}");
    }
    if v["count"].as_u64() != Some(u64::from(n)) {
        bail!("the group holds {} members, not {n}", v["count"]);
    }
    Ok(seconds)
}

/// Creates a live broadcast to the group, sending at once; its id and the
/// round trip.
async fn create(
    client: &reqwest::Client,
    server: &BenchServer,
    title: &str,
) -> anyhow::Result<(String, Duration)> {
    let body = json!({
        "title": title,
        "body": "Herald bench: this is a test broadcast. No action is needed.",
        "groups": [GROUP],
        "mode": "live",
        "requires_approval": false,
    })
    .to_string();
    let t = Instant::now();
    let r = client
        .post(format!("{}/v1/broadcasts", server.base))
        .bearer_auth(&server.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let took = t.elapsed();
    if status != 201 {
        bail!("POST /v1/broadcasts answered {status}: {v}");
    }
    let id = v["id"].as_str().context("broadcast id")?.to_string();
    Ok((id, took))
}

/// The first broadcast as the polls saw it, times from the start of the
/// create call.
struct Run {
    create: Duration,
    first_submit: Duration,
    all_submitted: Duration,
    completed: Duration,
    /// `(seconds since create, queued)` of every poll.
    samples: Vec<(f64, u64)>,
    /// `(seconds since create, queued, ready)` of every poll after the
    /// first submit until nothing is queued; `ready` is the server's
    /// `herald_queue_depth` of the class: messages a dispatcher can claim.
    depths: Vec<(f64, u64, u64)>,
    last: Counters,
}

impl Run {
    /// Seconds between polls that found nothing ready to claim while the
    /// broadcast still had messages to send: the carrier idle, waiting for
    /// the fan-out (as far as a poll can tell).
    fn starved_seconds(&self) -> f64 {
        self.depths
            .windows(2)
            .filter(|w| w[0].2 == 0 && w[0].1 > 0)
            .map(|w| w[1].0 - w[0].0)
            .fold(0.0, |a, b| a + b)
    }

    /// About one poll per second: `[seconds, queued, ready]`.
    fn timeline(&self) -> Vec<[f64; 3]> {
        let mut out: Vec<[f64; 3]> = Vec::new();
        for &(t, q, r) in &self.depths {
            if out.last().is_none_or(|l| t >= l[0] + 1.0) {
                out.push([(t * 100.0).round() / 100.0, q as f64, r as f64]);
            }
        }
        out
    }
}

/// Sends one broadcast to the group and follows it until completed.
async fn run_broadcast(
    client: &reqwest::Client,
    server: &BenchServer,
    timeout: Duration,
) -> anyhow::Result<(String, Run)> {
    let started = Instant::now();
    let (id, create) = create(client, server, "bench broadcast").await?;
    let deadline = started + timeout;
    let mut samples = Vec::new();
    let mut depths = Vec::new();
    let mut first_submit = None;
    let mut all_submitted = None;
    loop {
        let c = counters(client, server, &id).await?;
        let at = started.elapsed();
        samples.push((at.as_secs_f64(), c.queued));
        if first_submit.is_none() && c.sent() >= 1 {
            first_submit = Some(at);
        }
        if all_submitted.is_none() && c.queued == 0 && c.status != "pending_approval" {
            all_submitted = Some(at);
        }
        if first_submit.is_some() && all_submitted.is_none() {
            let ready = queue_depth(client, server, CLASS).await?;
            depths.push((at.as_secs_f64(), c.queued, ready));
        }
        if c.status == "completed" {
            let first_submit = first_submit.unwrap_or(at);
            return Ok((
                id,
                Run {
                    create,
                    first_submit,
                    all_submitted: all_submitted.unwrap_or(at),
                    completed: at,
                    samples,
                    depths,
                    last: c,
                },
            ));
        }
        if c.status != "sending" {
            bail!("broadcast {id} ended {}: {c:?}", c.status);
        }
        if Instant::now() > deadline {
            bail!("broadcast {id} not completed within {timeout:?}: {c:?}");
        }
        let pause = if first_submit.is_none() {
            FIRST_POLL
        } else {
            POLL
        };
        tokio::time::sleep(pause).await;
    }
}

/// Highest rate of messages leaving `queued` over any window of about a
/// second of `samples`.
fn peak_rate(samples: &[(f64, u64)]) -> f64 {
    let mut best: f64 = 0.0;
    let mut j = 0;
    for (i, &(t, q)) in samples.iter().enumerate() {
        j = j.max(i);
        while j < samples.len() && samples[j].0 < t + 1.0 {
            j += 1;
        }
        let Some(&(tj, qj)) = samples.get(j) else {
            break;
        };
        best = best.max(q.saturating_sub(qj) as f64 / (tj - t));
    }
    best
}

/// A second broadcast to the group, canceled after [`CANCEL_AFTER`].
async fn cancel_one(
    client: &reqwest::Client,
    server: &BenchServer,
    n: u32,
) -> anyhow::Result<CancelFigures> {
    let (id, _) = create(client, server, "bench broadcast (canceled)").await?;
    tokio::time::sleep(CANCEL_AFTER).await;
    let before = counters(client, server, &id).await?;
    let t = Instant::now();
    let r = client
        .post(format!("{}/v1/broadcasts/{id}/cancel", server.base))
        .bearer_auth(&server.key)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let call = t.elapsed();
    // 409: it completed before the cancel (a small group on a fast carrier).
    let answered: Counters = match status.as_u16() {
        200 => serde_json::from_value(v)?,
        409 => counters(client, server, &id).await?,
        _ => bail!("POST /v1/broadcasts/{id}/cancel answered {status}: {v}"),
    };
    if answered.status != "canceled" {
        eprintln!(
            "broadcast: the second broadcast was {} before the cancel; no cancel figure",
            answered.status
        );
    }
    // Submits in flight at the cancel still get their receipts.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let settled = loop {
        let c = counters(client, server, &id).await?;
        if c.queued == 0 && c.submitted == 0 {
            break c;
        }
        if Instant::now() > deadline {
            bail!("canceled broadcast {id} still moving after {SETTLE_TIMEOUT:?}: {c:?}");
        }
        tokio::time::sleep(POLL).await;
    };
    let settle = t.elapsed();
    Ok(CancelFigures {
        took_effect: answered.status == "canceled",
        after_ms: CANCEL_AFTER.as_secs_f64() * 1000.0,
        sent_before_cancel: before.sent(),
        cancel_call_ms: call.as_secs_f64() * 1000.0,
        answered_adds_up: answered.adds_up() && answered.total == u64::from(n),
        settle_seconds: settle.as_secs_f64(),
        settled_adds_up: settled.adds_up() && settled.total == u64::from(n),
        answered,
        settled,
    })
}

/// One live broadcast to `--recipients` members, then a canceled one.
pub async fn broadcast(args: &BenchArgs) -> anyhow::Result<Summary> {
    let n = args.recipients;
    if n == 0 || n > 1_000_000 {
        bail!("broadcast: --recipients must be 1 to 1,000,000 (the largest group)");
    }
    let carrier_kind = Carrier::parse(&args.connector)?;
    // The in-process carrier is uncapped; SMPP is capped as in `hol`.
    let tps = match carrier_kind {
        Carrier::Sim => 0,
        Carrier::Smpp => args.throttle_tps,
    };
    let mut server = BenchServer::start_traced(args, tps, WINDOW, TRACE)?;
    let log = server.take_log().map(FanOutLog::follow).unwrap_or_default();
    let client = client(8)?;
    let started = Instant::now();
    let upload_seconds = upload(&client, &server, n).await?;
    let rss_after_upload = server.peak_rss_mib();
    eprintln!("broadcast: group of {n} uploaded in {upload_seconds:.1}s; broadcasting");
    // Generous: ten times what the cap allows, and at least half an hour.
    let timeout = Duration::from_secs(match tps {
        0 => 1800,
        tps => (u64::from(n) * 10 / u64::from(tps)).max(1800),
    });
    let (id, run) = run_broadcast(&client, &server, timeout).await?;
    let rss_after_broadcast = server.peak_rss_mib();
    if run.last.total != u64::from(n) || !run.last.adds_up() {
        bail!(
            "broadcast {id} completed with counters that do not add up: {:?}",
            run.last
        );
    }
    let chunks = log.of(&id);
    eprintln!(
        "broadcast: completed in {:.1}s; canceling a second one after {CANCEL_AFTER:?}",
        run.completed.as_secs_f64()
    );
    let cancel = cancel_one(&client, &server, n).await?;
    let mut chunk_micros: Vec<u64> = chunks.chunks.iter().map(|c| c.1).collect();
    let write_seconds = chunks.write_seconds();
    let fanout_wall = match (chunks.first_seen, chunks.last_seen) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let all_submitted = run.all_submitted.as_secs_f64();
    let figures = BroadcastFigures {
        recipients: u64::from(n),
        upload_seconds,
        create_ms: run.create.as_secs_f64() * 1000.0,
        poll_ms: FIRST_POLL.as_secs_f64() * 1000.0,
        first_submit_ms: run.first_submit.as_secs_f64() * 1000.0,
        all_submitted_seconds: all_submitted,
        completed_seconds: run.completed.as_secs_f64(),
        leaving_queued_per_sec: f64::from(n) / all_submitted.max(1e-9),
        peak_leaving_queued_per_sec: peak_rate(&run.samples),
        starved_seconds: run.starved_seconds(),
        timeline: run.timeline(),
        fanout_chunks: chunks.chunks.len() as u64,
        fanout_recipients: chunks.recipients(),
        fanout_write_seconds: write_seconds,
        fanout_per_write_sec: if write_seconds > 0.0 {
            chunks.recipients() as f64 / write_seconds
        } else {
            0.0
        },
        fanout_wall_seconds: fanout_wall,
        fanout_chunk: Latency::of(&mut chunk_micros),
        counters: run.last,
        peak_rss_after_upload_mib: rss_after_upload,
        peak_rss_after_broadcast_mib: rss_after_broadcast,
        cancel: Some(cancel),
    };
    Ok(Summary {
        scenario: "broadcast".into(),
        description: format!(
            "one live broadcast (emergency, no approval) to a group of {n} uploaded as text/csv, \
             then a second one canceled after {}s; {}{}",
            CANCEL_AFTER.as_secs(),
            if tps > 0 {
                format!("carrier capped at {tps} TPS, ")
            } else {
                String::new()
            },
            carrier(args)
        ),
        connector: args.connector.clone(),
        messages: u64::from(n),
        accept_to_receipt_per_sec: None,
        accept_per_sec: None,
        admission_latency: None,
        head_of_line: None,
        backlog: None,
        script_calls: None,
        store_calls: None,
        otp: None,
        broadcast: Some(figures),
        store: super::report::StoreInfo::of(args, &server),
        peak_rss_mib: server.peak_rss_mib(),
        smsc_peak_rss_mib: server.smsc_peak_rss_mib(),
        data_mib: server.data_mib(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rate_takes_the_fastest_second() {
        let samples = [(0.0, 100), (0.5, 90), (1.0, 80), (1.5, 20), (2.0, 0)];
        // 0.5 → 1.5: 70 in 1 s; 1.0 → 2.0: 80 in 1 s.
        assert_eq!(peak_rate(&samples), 80.0);
        assert_eq!(peak_rate(&[(0.0, 5)]), 0.0);
    }

    #[test]
    fn counters_add_up_as_documented() {
        let mut c = Counters {
            total: 10,
            queued: 1,
            submitted: 2,
            delivered: 3,
            failed: 1,
            expired: 1,
            canceled: 1,
            refused: 1,
            ..Counters::default()
        };
        assert!(c.adds_up());
        assert_eq!(c.sent(), 6);
        c.queued = 0;
        assert!(!c.adds_up());
    }

    #[test]
    fn the_group_is_one_number_per_line() {
        let csv = group_csv(3);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().all(|l| l.starts_with("+1")));
    }
}
