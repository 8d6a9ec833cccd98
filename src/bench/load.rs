//! The load scenarios: single POSTs, batches, and emergency head-of-line
//! latency behind a million queued marketing messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::BenchArgs;
use super::report::{Backlog, Latency, Summary};
use super::server::{BenchServer, Carrier};
use crate::text::test_number;

/// Outstanding submits of the carrier connection in every scenario.
pub(super) const WINDOW: usize = 64;

/// How the scenario's carrier is reached, for its description.
pub(super) fn carrier(args: &BenchArgs) -> String {
    Carrier::parse(&args.connector).map_or_else(
        |_| args.connector.clone(),
        |c| c.describe(WINDOW, args.dlr_delay_ms, args.sim_nodelay),
    )
}

/// Longest wait for a scenario's receipts.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(900);

pub(super) fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(8))
        .tcp_nodelay(true)
        .build()?)
}

/// One message. Its text is what the shipped `otp` template renders, sent
/// as `body`, or with `template` as `template` + `vars` for the server to
/// render: runs with and without `--template otp` store and send the same
/// bytes, so a pair of them measures the template and scripts alone.
fn single_body(n: u32, class: &str, template: Option<&str>) -> String {
    let code = n % 1_000_000;
    match template {
        None => format!(
            r#"{{"to":"{}","body":"Your Herald code is {code:06}. It expires in 10 min. Do not share it.","class":"{class}"}}"#,
            test_number(n)
        ),
        Some(t) => format!(
            r#"{{"to":"{}","template":"{t}","vars":{{"app_name":"Herald","code":"{code:06}","ttl_minutes":10}},"class":"{class}"}}"#,
            test_number(n)
        ),
    }
}

fn batch_body(first: u32, count: u32, class: &str, template: Option<&str>) -> String {
    let mut s = String::with_capacity(count as usize * 140 + 16);
    s.push_str(r#"{"messages":["#);
    for i in 0..count {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&single_body(first + i, class, template));
    }
    s.push_str("]}");
    s
}

async fn post(
    client: &reqwest::Client,
    server: &BenchServer,
    path: &str,
    body: String,
) -> anyhow::Result<Value> {
    let r = client
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status != 202 {
        bail!("{path} answered {status}: {v}");
    }
    Ok(v)
}

/// Sum of a counter family in the servers' metrics, over every node.
async fn counter(
    client: &reqwest::Client,
    server: &BenchServer,
    name: &str,
) -> anyhow::Result<u64> {
    let mut sum = 0;
    for base in &server.bases {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        sum += text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum::<u64>();
    }
    Ok(sum)
}

/// `herald_queue_depth{class}`: messages of `class` ready to send now.
pub(super) async fn queue_depth(
    client: &reqwest::Client,
    server: &BenchServer,
    class: &str,
) -> anyhow::Result<u64> {
    let text = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await?
        .text()
        .await?;
    let prefix = format!("herald_queue_depth{{class=\"{class}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no herald_queue_depth for {class} in /metrics"))
}

/// Pause between emergency messages in `hol`.
const EMERGENCY_GAP_MS: u64 = 20;

/// Waits until `n` messages have a delivered receipt; returns when.
async fn wait_delivered(
    client: &reqwest::Client,
    server: &BenchServer,
    n: u64,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + RECEIPT_TIMEOUT;
    loop {
        if counter(client, server, "herald_messages_delivered_total").await? >= n {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("receipts did not arrive within {RECEIPT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Single POSTs from `concurrency` keep-alive clients.
pub async fn single_posts(args: &BenchArgs) -> anyhow::Result<Summary> {
    let server = BenchServer::start(args, 0, WINDOW, args.scripts.as_deref())?;
    let client = client(args.concurrency)?;
    let template = args.template.clone();
    post(
        &client,
        &server,
        "/v1/messages",
        single_body(u32::MAX - 1, "transactional", template.as_deref()),
    )
    .await?;
    let total = args.single_messages;
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let client = client.clone();
        let next = next.clone();
        let base = server.base_for(c).to_string();
        let key = server.key.clone();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(single_body(i, "transactional", template.as_deref()))
                    .send()
                    .await?;
                let status = r.status();
                let _ = r.bytes().await?;
                if status != 202 {
                    bail!("POST /v1/messages answered {status}");
                }
                latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    for t in tasks {
        latencies.extend(t.await.context("client task")??);
    }
    let accepted = started.elapsed();
    let done = wait_delivered(&client, &server, u64::from(total) + 1).await?;
    let seconds = done.duration_since(started).as_secs_f64();
    Ok(Summary {
        scenario: "single".into(),
        description: format!(
            "single POST /v1/messages, {} keep-alive clients, {}",
            args.concurrency,
            carrier(args)
        ),
        connector: args.connector.clone(),
        messages: u64::from(total),
        accept_to_receipt_per_sec: Some(f64::from(total) / seconds),
        accept_per_sec: Some(f64::from(total) / accepted.as_secs_f64()),
        admission_latency: Some(Latency::of(&mut latencies)),
        head_of_line: None,
        backlog: None,
        script_calls: None,
        store_calls: None,
        otp: None,
        broadcast: None,
        store: super::report::StoreInfo::of(args, &server),
        peak_rss_mib: server.peak_rss_mib(),
        smsc_peak_rss_mib: server.smsc_peak_rss_mib(),
        data_mib: server.data_mib(),
        seconds,
    })
}

/// Sends `total` messages of `class` to test numbers `first..first + total`
/// in batches, `parallel` requests at a time.
#[allow(clippy::too_many_arguments)] // one call site per scenario, all named
pub(super) async fn send_batches(
    client: &reqwest::Client,
    server: &BenchServer,
    first: u32,
    total: u32,
    batch: u32,
    parallel: usize,
    class: &'static str,
    template: Option<&str>,
    latencies: &mut Vec<u64>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for c in 0..parallel {
        let client = client.clone();
        let next = next.clone();
        let base = server.base_for(c).to_string();
        let key = server.key.clone();
        let template = template.map(str::to_string);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let sent = next.fetch_add(batch, Ordering::Relaxed);
                if sent >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let count = batch.min(total - sent);
                let body = batch_body(first.wrapping_add(sent), count, class, template.as_deref());
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/messages/batch"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = r.status();
                let v: Value = r.json().await?;
                if status != 202 {
                    bail!("batch answered {status}: {v}");
                }
                let accepted = v["accepted"].as_array().map_or(0, Vec::len);
                if accepted != count as usize {
                    bail!("batch accepted {accepted} of {count}: {}", v["rejected"]);
                }
                lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
        }));
    }
    for t in tasks {
        latencies.extend(t.await.context("batch task")??);
    }
    Ok(())
}

/// Batches of `batch_size`, four requests in flight.
pub async fn batches(args: &BenchArgs) -> anyhow::Result<Summary> {
    let server = BenchServer::start(args, 0, WINDOW, args.scripts.as_deref())?;
    let client = client(8)?;
    post(
        &client,
        &server,
        "/v1/messages",
        single_body(u32::MAX - 1, "transactional", args.template.as_deref()),
    )
    .await?;
    let total = args.batch_messages;
    let started = Instant::now();
    let mut latencies = Vec::new();
    send_batches(
        &client,
        &server,
        0,
        total,
        args.batch_size,
        4,
        "transactional",
        args.template.as_deref(),
        &mut latencies,
    )
    .await?;
    let accepted = started.elapsed();
    let done = wait_delivered(&client, &server, u64::from(total) + 1).await?;
    let seconds = done.duration_since(started).as_secs_f64();
    Ok(Summary {
        scenario: "batch".into(),
        description: format!(
            "POST /v1/messages/batch of {}, 4 in flight, {}",
            args.batch_size,
            carrier(args)
        ),
        connector: args.connector.clone(),
        messages: u64::from(total),
        accept_to_receipt_per_sec: Some(f64::from(total) / seconds),
        accept_per_sec: Some(f64::from(total) / accepted.as_secs_f64()),
        admission_latency: Some(Latency::of(&mut latencies)),
        head_of_line: None,
        backlog: None,
        script_calls: None,
        store_calls: None,
        otp: None,
        broadcast: None,
        store: super::report::StoreInfo::of(args, &server),
        peak_rss_mib: server.peak_rss_mib(),
        smsc_peak_rss_mib: server.smsc_peak_rss_mib(),
        data_mib: server.data_mib(),
        seconds,
    })
}

pub(super) fn micros_of(v: &Value, field: &str) -> Option<i64> {
    let ts: jiff::Timestamp = v[field].as_str()?.parse().ok()?;
    Some(ts.as_microsecond())
}

/// Queues `backlog` marketing messages plus `margin` (what the throttled
/// carrier will drain during the measured phase), then tops up until the
/// queue holds both. Returns the messages sent, how long the first sending
/// took and the top-ups needed; `scenario` names the caller in errors.
pub(super) async fn fill_backlog(
    client: &reqwest::Client,
    server: &BenchServer,
    args: &BenchArgs,
    backlog: u32,
    margin: u32,
    scenario: &str,
) -> anyhow::Result<(u32, Duration, u32)> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let target = u64::from(backlog) + u64::from(margin);
    let mut sent = backlog.saturating_add(margin);
    send_batches(
        client,
        server,
        0,
        sent,
        args.batch_size,
        4,
        "marketing",
        None,
        &mut latencies,
    )
    .await?;
    let queued = started.elapsed();
    let mut top_ups = 0u32;
    loop {
        let depth = queue_depth(client, server, "marketing").await?;
        if depth >= target {
            return Ok((sent, queued, top_ups));
        }
        if top_ups == 10 {
            bail!(
                "{scenario}: the queue holds {depth} marketing messages after {top_ups} top-ups, not {target}"
            );
        }
        // Over by a tenth of a second of drain (or a quarter of the
        // margin), doubling each round, so the top-up outruns the carrier
        // draining meanwhile even on a slow machine.
        let extra = (args.throttle_tps / 10)
            .max(margin / 4)
            .max(1)
            .saturating_mul(1 << top_ups);
        let missing = u32::try_from(target - depth)
            .unwrap_or(u32::MAX)
            .saturating_add(extra);
        send_batches(
            client,
            server,
            sent,
            missing,
            args.batch_size,
            4,
            "marketing",
            None,
            &mut latencies,
        )
        .await?;
        sent = sent.saturating_add(missing);
        top_ups += 1;
    }
}

/// Emergency latency while a large marketing backlog waits on a throttled carrier.
pub async fn head_of_line(args: &BenchArgs) -> anyhow::Result<Summary> {
    // No scripts: quiet hours would hold the marketing backlog.
    let server = BenchServer::start(args, args.throttle_tps, WINDOW, None)?;
    let client = client(8)?;
    let started = Instant::now();
    // The throttled carrier drains the backlog while it is filled and while
    // the emergencies go out: fill past the requested backlog by what the
    // emergency phase will drain, then top up until the queue holds it.
    let phase = Duration::from_millis(EMERGENCY_GAP_MS + 5) * args.emergency_messages;
    let margin =
        u32::try_from((f64::from(args.throttle_tps) * phase.as_secs_f64() * 1.5).ceil() as u64)
            .unwrap_or(u32::MAX);
    let (sent, queued, top_ups) =
        fill_backlog(&client, &server, args, args.backlog, margin, "hol").await?;
    eprintln!(
        "hol: {sent} marketing sent in {:.1}s ({:.0} msg/s, {top_ups} top-ups); sending {} emergency messages",
        queued.as_secs_f64(),
        f64::from(sent) / queued.as_secs_f64(),
        args.emergency_messages
    );
    let mut ids = Vec::new();
    let mut admission = Vec::new();
    // Read right before the first emergency message is sent.
    let depth_before = queue_depth(&client, &server, "marketing").await?;
    for i in 0..args.emergency_messages {
        let t = Instant::now();
        let v = post(
            &client,
            &server,
            "/v1/messages",
            single_body(2_000_000 + i, "emergency", None),
        )
        .await?;
        admission.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        ids.push(v["id"].as_str().context("id")?.to_string());
        tokio::time::sleep(Duration::from_millis(EMERGENCY_GAP_MS)).await;
    }
    let depth_after = queue_depth(&client, &server, "marketing").await?;
    if depth_before < u64::from(args.backlog) || depth_after < u64::from(args.backlog) {
        eprintln!(
            "hol: WARNING the marketing queue held {depth_before} before and {depth_after} after \
             the emergencies, below the requested {}",
            args.backlog
        );
    }
    let mut hol = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let m: Value = client
                .get(format!("{}/v1/messages/{id}", server.base))
                .bearer_auth(&server.key)
                .send()
                .await?
                .json()
                .await?;
            if let (Some(created), Some(submitted)) =
                (micros_of(&m, "created_at"), micros_of(&m, "submitted_at"))
            {
                hol.push(u64::try_from(submitted - created).unwrap_or(0));
                break;
            }
            if Instant::now() > deadline {
                bail!("emergency message {id} not submitted within 60 s: {m}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let depth = queue_depth(&client, &server, "marketing").await?;
    eprintln!("hol: {depth} marketing messages still queued at the end");
    Ok(Summary {
        scenario: "hol".into(),
        description: format!(
            "{} emergency single POSTs while {} marketing wait on a carrier capped at {} TPS; {}",
            args.emergency_messages,
            args.backlog,
            args.throttle_tps,
            carrier(args)
        ),
        connector: args.connector.clone(),
        messages: u64::from(sent) + u64::from(args.emergency_messages),
        accept_to_receipt_per_sec: None,
        accept_per_sec: Some(f64::from(sent) / queued.as_secs_f64()),
        admission_latency: Some(Latency::of(&mut admission)),
        head_of_line: Some(Latency::of(&mut hol)),
        backlog: Some(Backlog {
            requested: u64::from(args.backlog),
            queued_before_emergencies: depth_before,
            queued_after_emergencies: depth_after,
        }),
        script_calls: None,
        store_calls: None,
        otp: None,
        broadcast: None,
        store: super::report::StoreInfo::of(args, &server),
        peak_rss_mib: server.peak_rss_mib(),
        smsc_peak_rss_mib: server.smsc_peak_rss_mib(),
        data_mib: server.data_mib(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
