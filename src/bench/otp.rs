//! The `otp` scenario: one-time codes issued at a fixed rate, each verified
//! once, while a marketing backlog waits on a throttled carrier.
//!
//! Measured: the `POST /v1/otp/verify` round trip, and issue → submit: from
//! the start of `POST /v1/otp` to the `submitted_at` of the code's SMS
//! (`GET /v1/otp/{id}` → `message_id` → `GET /v1/messages/{id}`). Both
//! clocks are this machine's.
//!
//! Herald never hands a code back (it is sealed until submit and stored
//! only as a keyed argon2id hash). With `--connector smpp` the bench reads
//! each code where a user would, from the SMS the SMSC simulator received,
//! and verifies with it: every OTP should be approved. With the in-process
//! carrier there is no such SMS to read, so it verifies with a wrong code:
//! the server runs the same argon2id check and the same atomic attempt
//! write (an approval adds one counter write), and approvals are 0.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::BenchArgs;
use super::load::{WINDOW, carrier, client, fill_backlog, micros_of, queue_depth};
use super::report::{Latency, OtpFigures, Summary};
use super::server::BenchServer;
use crate::model::now_micros;
use crate::text::test_number;

/// The shipped OTP templates, so the scenario runs from any directory
/// (and without the shipped scripts: quiet hours would hold the backlog).
const TEMPLATES: [(&str, &str); 3] = [
    ("otp.rhai", include_str!("../../templates/otp.rhai")),
    ("otp.es.rhai", include_str!("../../templates/otp.es.rhai")),
    ("otp.fr.rhai", include_str!("../../templates/otp.fr.rhai")),
];

/// Test number of the first OTP, well away from the backlog's numbers.
const FIRST_NUMBER: u32 = 500_000;

/// The code every verification sends. A real code equal to it (one chance
/// in a million per OTP) would show up as an approval.
const WRONG_CODE: &str = "000000";

/// Longest wait for the OTPs' SMS to be submitted once all are issued.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// One OTP as the bench saw it.
struct Issued {
    id: String,
    /// Wall clock at the start of `POST /v1/otp`, µs.
    started_at: i64,
    issue_us: u64,
    verify_us: u64,
    valid: bool,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Issues an OTP to test number `FIRST_NUMBER + n` and verifies it once.
async fn issue_and_verify(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    n: u32,
    smsc_control: Option<&str>,
) -> anyhow::Result<Issued> {
    let to = test_number(FIRST_NUMBER + n).to_string();
    let body = json!({ "to": to }).to_string();
    let started_at = now_micros();
    let t = Instant::now();
    let r = client
        .post(format!("{base}/v1/otp"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let issue_us = micros(t.elapsed());
    if status != 201 {
        bail!("POST /v1/otp answered {status}: {v}");
    }
    let id = v["id"].as_str().context("OTP id")?.to_string();
    let code = match smsc_control {
        Some(control) => code_received(client, control, &to).await?,
        None => WRONG_CODE.to_string(),
    };
    let body = json!({ "id": id, "code": code }).to_string();
    let t = Instant::now();
    let r = client
        .post(format!("{base}/v1/otp/verify"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let verify_us = micros(t.elapsed());
    if status != 200 {
        bail!("POST /v1/otp/verify answered {status}: {v}");
    }
    let valid = v["valid"].as_bool().context("verify: valid")?;
    Ok(Issued {
        id,
        started_at,
        issue_us,
        verify_us,
        valid,
    })
}

/// The code in the SMS the simulator received for `to`, as a user reads it.
async fn code_received(
    client: &reqwest::Client,
    control: &str,
    to: &str,
) -> anyhow::Result<String> {
    let url = format!("{control}/submitted?to={}", to.trim_start_matches('+'));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let texts: Vec<String> = client.get(&url).send().await?.json().await?;
        if let Some(code) = texts.last().and_then(|text| {
            text.split(|c: char| !c.is_ascii_digit())
                .find(|run| run.len() >= 4)
                .map(str::to_string)
        }) {
            return Ok(code);
        }
        if Instant::now() > deadline {
            bail!("no OTP SMS for {to} reached the SMSC within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn get_json(
    client: &reqwest::Client,
    server: &BenchServer,
    path: &str,
) -> anyhow::Result<Value> {
    let r = client
        .get(format!("{}{path}", server.base))
        .bearer_auth(&server.key)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {v}");
    }
    Ok(v)
}

/// OTPs at `--otp-rate` while `--otp-backlog` marketing messages wait on a
/// carrier capped at `--throttle-tps`.
pub async fn otp(args: &BenchArgs) -> anyhow::Result<Summary> {
    if args.otp_count == 0 || args.otp_rate == 0 {
        bail!("otp: --otp-count and --otp-rate must be above 0");
    }
    let templates = tempfile::Builder::new()
        .prefix("herald-bench-otp-")
        .tempdir()
        .context("temp dir")?;
    std::fs::create_dir(templates.path().join("scripts"))?;
    std::fs::create_dir(templates.path().join("templates"))?;
    for (name, text) in TEMPLATES {
        std::fs::write(templates.path().join("templates").join(name), text)?;
    }
    let server =
        BenchServer::start_recording(args, args.throttle_tps, WINDOW, Some(templates.path()))?;
    let client = client(16)?;
    let started = Instant::now();
    // The carrier drains the backlog while the OTPs go out: queue past the
    // requested backlog by what that phase will drain.
    let phase = Duration::from_secs_f64(f64::from(args.otp_count) / f64::from(args.otp_rate));
    let margin =
        u32::try_from((f64::from(args.throttle_tps) * phase.as_secs_f64() * 1.5).ceil() as u64)
            .unwrap_or(u32::MAX);
    let (sent, queued, _) =
        fill_backlog(&client, &server, args, args.otp_backlog, margin, "otp").await?;
    eprintln!(
        "otp: {sent} marketing sent in {:.1}s ({:.0} msg/s); issuing {} OTPs at {}/s",
        queued.as_secs_f64(),
        f64::from(sent) / queued.as_secs_f64(),
        args.otp_count,
        args.otp_rate
    );
    let depth_before = queue_depth(&client, &server, "marketing").await?;
    // A fixed rate, whatever the answers take: each OTP is its own task.
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.otp_rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(args.otp_count as usize);
    let first = Instant::now();
    let mut last = first;
    for n in 0..args.otp_count {
        ticks.tick().await;
        last = Instant::now();
        let client = client.clone();
        let base = server.base_for(n as usize).to_string();
        let key = server.key.clone();
        let control = server.smsc_control.clone();
        tasks.push(tokio::spawn(async move {
            issue_and_verify(&client, &base, &key, n, control.as_deref()).await
        }));
    }
    let spread = last.duration_since(first).as_secs_f64();
    let mut issued = Vec::with_capacity(tasks.len());
    for t in tasks {
        issued.push(t.await.context("OTP task")??);
    }
    let depth_after = queue_depth(&client, &server, "marketing").await?;
    if depth_before < u64::from(args.otp_backlog) || depth_after < u64::from(args.otp_backlog) {
        eprintln!(
            "otp: WARNING the marketing queue held {depth_before} before and {depth_after} after \
             the OTPs, below the requested {}",
            args.otp_backlog
        );
    }
    let mut to_submit = Vec::with_capacity(issued.len());
    let deadline = Instant::now() + SUBMIT_TIMEOUT;
    for o in &issued {
        let view = get_json(&client, &server, &format!("/v1/otp/{}", o.id)).await?;
        let message = view["message_id"]
            .as_str()
            .with_context(|| format!("OTP without message_id: {view}"))?;
        loop {
            let m = get_json(&client, &server, &format!("/v1/messages/{message}")).await?;
            if let Some(submitted) = micros_of(&m, "submitted_at") {
                to_submit.push(u64::try_from(submitted - o.started_at).unwrap_or(0));
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the SMS of OTP {} was not submitted within {SUBMIT_TIMEOUT:?}: {m}",
                    o.id
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let depth = queue_depth(&client, &server, "marketing").await?;
    eprintln!("otp: {depth} marketing messages still queued at the end");
    let mut issue: Vec<u64> = issued.iter().map(|o| o.issue_us).collect();
    let mut verify: Vec<u64> = issued.iter().map(|o| o.verify_us).collect();
    let approved = issued.iter().filter(|o| o.valid).count() as u64;
    let right = server.smsc_control.is_some();
    if right && approved != u64::from(args.otp_count) {
        bail!(
            "{approved} of {} OTPs verified with the code the SMSC received",
            args.otp_count
        );
    }
    let count = u64::from(args.otp_count);
    Ok(Summary {
        scenario: "otp".into(),
        description: format!(
            "{} OTPs issued at {}/s (shipped `otp` template), each verified once {}, while {} \
             marketing wait on a carrier capped at {} TPS; {}",
            args.otp_count,
            args.otp_rate,
            if right {
                "with the code read from the SMS the SMSC received"
            } else {
                "with a wrong code (no SMS to read from the in-process carrier; same argon2id check as a right one)"
            },
            args.otp_backlog,
            args.throttle_tps,
            carrier(args)
        ),
        connector: args.connector.clone(),
        messages: u64::from(sent) + count,
        accept_to_receipt_per_sec: None,
        accept_per_sec: Some(f64::from(sent) / queued.as_secs_f64()),
        admission_latency: None,
        head_of_line: None,
        backlog: None,
        script_calls: None,
        store_calls: None,
        broadcast: None,
        otp: Some(OtpFigures {
            issued: count,
            rate_per_sec: f64::from(args.otp_rate),
            achieved_rate_per_sec: if spread > 0.0 {
                (count - 1) as f64 / spread
            } else {
                f64::from(args.otp_rate)
            },
            verify_code: if right { "right" } else { "wrong" }.into(),
            approved,
            issue_latency: Latency::of(&mut issue),
            verify_latency: Latency::of(&mut verify),
            issue_to_submit: Latency::of(&mut to_submit),
            backlog_requested: u64::from(args.otp_backlog),
            queued_before_first_otp: depth_before,
            queued_after_last_otp: depth_after,
        }),
        store: super::report::StoreInfo::of(args, &server),
        peak_rss_mib: server.peak_rss_mib(),
        smsc_peak_rss_mib: server.smsc_peak_rss_mib(),
        data_mib: server.data_mib(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
