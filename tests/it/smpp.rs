//! The SMPP path end to end on good days: a real gateway (HTTP on
//! 127.0.0.1:0) with an `smpp` connector to the in-process SMSC simulator.
//! Faults are in `smpp_faults.rs`.

use std::time::{Duration, SystemTime};

use herald::smsc_sim::{SimConfig, SmscSim};
use herald::testing::{eventually, eventually_some};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, number};

async fn start_sim(config: SimConfig) -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SmscSim::start(listener, config).await
}

/// How long any one step of these tests may take.
const UNTIL: Duration = Duration::from_secs(15);

fn gateway_config(port: u16, extra: &str) -> String {
    format!(
        "[[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"herald\"\npassword = \"pw\"\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\n{extra}\n"
    )
}

#[tokio::test]
async fn a_long_unicode_message_is_delivered_when_every_part_is() {
    let sim = start_sim(SimConfig {
        dlr_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await;
    let app = TestApp::spawn_with(&gateway_config(sim.local_addr().port(), "")).await;
    let body = "Ünïcödé ✓ ".repeat(15);
    let sent = app.send(json!({"to": number(1), "body": body})).await;
    assert_eq!(sent["encoding"], "ucs2");
    assert_eq!(sent["segments"], 3);
    let id = sent["id"].as_str().expect("id");
    let m = app.wait_final(id, Duration::from_secs(15)).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["connector"], "carrier");
    let ids: Vec<String> = m["smsc_message_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    let submitted: Vec<String> = sim.submitted().into_iter().map(|s| s.message_id).collect();
    assert_eq!(ids, submitted);
    assert_eq!(sim.stats().parts, 3);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_undeliverable_receipt_fails_the_message_with_the_carrier_error() {
    let sim = start_sim(SimConfig {
        dlr_delay: Duration::from_millis(10),
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let app = TestApp::spawn_with(&gateway_config(sim.local_addr().port(), "")).await;
    let id = app.send_simple(2, "transactional").await;
    let m = app.wait_final(&id, Duration::from_secs(15)).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error"], "undeliverable: error 001", "{m}");
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_inbound_stop_over_smpp_is_listed_and_opts_the_number_out() {
    let sim = start_sim(SimConfig::default()).await;
    let app = TestApp::spawn_with(&gateway_config(sim.local_addr().port(), "")).await;
    let from = number(3);
    eventually_some(UNTIL, "the bind is up", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    sim.inject_mo(&from, "12345", "STOP").await.expect("inject");
    let item = eventually_some(UNTIL, "the inbound message is stored", async || {
        let page: Value = app.get("/v1/inbound").await.json().await.ok()?;
        page["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(item["from"], from.as_str());
    assert_eq!(item["to"], "12345");
    assert_eq!(item["body"], "STOP");
    assert_eq!(item["connector"], "carrier");
    let marketing = json!({"to": from, "body": "sale", "class": "marketing"});
    let r = app.post("/v1/messages", &marketing).await;
    assert_eq!(r.status(), 422, "opted-out numbers get no marketing");
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_inbound_start_over_smpp_removes_the_opt_out() {
    let sim = start_sim(SimConfig::default()).await;
    let app = TestApp::spawn_with(&gateway_config(sim.local_addr().port(), "")).await;
    let from = number(4);
    eventually_some(UNTIL, "the bind is up", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    let marketing = json!({"to": from, "body": "sale", "class": "marketing"});
    sim.inject_mo(&from, "12345", "STOP").await.expect("inject");
    eventually_some(UNTIL, "the STOP opts the number out", async || {
        (app.post("/v1/messages", &marketing).await.status() == 422).then_some(())
    })
    .await;
    sim.inject_mo(&from, "12345", "start")
        .await
        .expect("inject");
    let item = eventually_some(UNTIL, "the START is stored", async || {
        let page: Value = app.get("/v1/inbound").await.json().await.ok()?;
        page["items"]
            .as_array()?
            .iter()
            .find(|i| i["body"] == "start")
            .cloned()
    })
    .await;
    assert_eq!(item["action"], "opt_in");
    assert_eq!(item["from"], from.as_str());
    // Stored and applied in one write: marketing reaches the number again.
    let r = app.post("/v1/messages", &marketing).await;
    assert_eq!(r.status(), 202, "START lifted the opt-out");
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_on_inbound_webhook_is_never_posted_unsigned() {
    let (capture, url) = crate::webhooks::Capture::start(0).await;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("scripts")).expect("scripts dir");
    std::fs::write(
        dir.path().join("scripts/hooks.rhai"),
        format!("fn on_inbound(mo) {{ \"{url}\" }}"),
    )
    .expect("write hooks");
    // Scripts, but no [inbound] webhook_secret.
    let extra = format!(
        "[scripts]\nenabled = true\ndir = \"{}\"\ntemplates_dir = \"{}\"\n{}",
        dir.path().join("scripts").display(),
        dir.path().join("templates").display(),
        crate::webhooks::ALLOW_LOOPBACK
    );
    let app = TestApp::spawn_in(dir, &gateway_config(sim.local_addr().port(), &extra)).await;
    eventually_some(UNTIL, "the bind is up", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    sim.inject_mo(&number(42), "12345", "ORDER 7")
        .await
        .expect("inject");
    eventually_some(UNTIL, "the webhook is refused", async || {
        app.metrics()
            .await
            .contains("herald_webhook_deliveries_total{code=\"refused_unsigned\"} 1")
            .then_some(())
    })
    .await;
    let page: Value = app.get("/v1/inbound").await.json().await.expect("json");
    assert_eq!(
        page["items"][0]["body"], "ORDER 7",
        "the message itself is kept"
    );
    // The webhook worker polls every 100 ms: give it ample time to misbehave.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *capture.attempts.lock().expect("lock"),
        0,
        "nothing was POSTed"
    );
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn readiness_follows_the_smpp_bind() {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_refuse_binds(true);
    let app = TestApp::spawn_with(&gateway_config(sim.local_addr().port(), "")).await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    sim.set_refuse_binds(false);
    eventually_some(UNTIL, "ready once bound", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn on_inbound_sends_keywords_to_webhooks_replies_and_drops() {
    let (capture, url) = crate::webhooks::Capture::start(0).await;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("scripts")).expect("scripts dir");
    std::fs::write(
        dir.path().join("scripts/hooks.rhai"),
        format!(
            r#"fn on_inbound(mo) {{
                if mo.keyword == "ORDER" {{ return "{url}"; }}
                if mo.keyword == "HELP" {{ return #{{ reply: "Reply STOP to opt out." }}; }}
                if mo.keyword == "SPAM" || mo.keyword == "STOP" {{ return #{{ drop: true }}; }}
                ()
            }}"#
        ),
    )
    .expect("write hooks");
    let extra = format!(
        "[scripts]\nenabled = true\ndir = \"{}\"\ntemplates_dir = \"{}\"\n\
         [inbound]\nwebhook_secret = \"{}\"\n{}",
        dir.path().join("scripts").display(),
        dir.path().join("templates").display(),
        crate::webhooks::INBOUND_SECRET,
        crate::webhooks::ALLOW_LOOPBACK
    );
    let app = TestApp::spawn_in(dir, &gateway_config(sim.local_addr().port(), &extra)).await;
    eventually_some(UNTIL, "the bind is up", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    let from = number(40);
    sim.inject_mo(&from, "12345", "ORDER 42")
        .await
        .expect("inject");
    sim.inject_mo(&from, "12345", "SPAM now")
        .await
        .expect("inject");
    sim.inject_mo(&from, "12345", "HELP").await.expect("inject");
    let stopper = number(41);
    sim.inject_mo(&stopper, "12345", "STOP")
        .await
        .expect("inject");
    // The ORDER message reaches the script's webhook, signed.
    let got = capture.wait_for(1, Duration::from_secs(15)).await;
    let v: Value = serde_json::from_slice(&got[0].1).expect("json");
    assert_eq!(v["body"], "ORDER 42");
    assert!(crate::webhooks::signed_by(
        crate::webhooks::INBOUND_SECRET,
        &got[0].0,
        &got[0].1
    ));
    // HELP gets an automatic reply through the carrier.
    let reply = eventually_some(UNTIL, "the reply is submitted", async || {
        sim.submitted()
            .into_iter()
            .find(|s| s.destination_addr.trim_start_matches('+') == from.trim_start_matches('+'))
    })
    .await;
    assert_eq!(reply.short_message, b"Reply STOP to opt out.".to_vec());
    // SPAM was dropped: only ORDER and HELP are stored.
    let page: Value = app.get("/v1/inbound").await.json().await.expect("json");
    let bodies: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["ORDER 42", "HELP"]);
    // A dropped STOP still opts its sender out.
    eventually_some(UNTIL, "both drops are handled", async || {
        app.metrics()
            .await
            .contains("herald_inbound_messages_total{code=\"dropped\"} 2")
            .then_some(())
    })
    .await;
    let r = app
        .post(
            "/v1/messages",
            &json!({"to": stopper, "body": "sale", "class": "marketing"}),
        )
        .await;
    assert_eq!(r.status(), 422, "the dropped STOP opted the sender out");
    app.stop().await;
    sim.shutdown().await;
}

/// Messages queued before the bind comes up in [`submit_rate`].
const PACE_MESSAGES: u32 = 3000;
/// A small window: against an SMSC with Nagle on, a connector that does not
/// refill its window at once moves one window per delayed-ACK timer (40 ms),
/// so a small window turns that stall into an unmistakable collapse.
const PACE_WINDOW: usize = 8;

/// Submits per second from a gateway to a simulator that behaves like most
/// SMSCs (`nagle`: Nagle on, one write per PDU) or not, from the first
/// `submit_sm` to the last, with every message
/// queued before the bind comes up (so the figure is the SMPP path's, not
/// the HTTP side's).
async fn submit_rate(nagle: bool) -> f64 {
    let sim = start_sim(SimConfig {
        nagle,
        dlr_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await;
    sim.set_refuse_binds(true);
    let app = TestApp::spawn_with(&gateway_config(
        sim.local_addr().port(),
        &format!("window = {PACE_WINDOW}"),
    ))
    .await;
    for first in (0..PACE_MESSAGES).step_by(100) {
        let messages: Vec<Value> = (first..first + 100)
            .map(|n| json!({"to": number(n), "body": format!("pace {n}")}))
            .collect();
        let r = app
            .post("/v1/messages/batch", &json!({ "messages": messages }))
            .await;
        assert_eq!(r.status(), 202);
    }
    sim.set_refuse_binds(false);
    eventually(Duration::from_secs(60), "every message submitted", || {
        sim.stats().submits >= u64::from(PACE_MESSAGES)
    })
    .await;
    // The simulator's own arrival times: no polling delay in the figure.
    let arrivals: Vec<SystemTime> = sim.submitted().iter().map(|s| s.received_at).collect();
    let first = arrivals.iter().min().expect("submits");
    let last = arrivals.iter().max().expect("submits");
    let elapsed = last.duration_since(*first).unwrap_or_default();
    app.stop().await;
    sim.shutdown().await;
    f64::from(PACE_MESSAGES - 1) / elapsed.as_secs_f64().max(1e-6)
}

#[tokio::test]
async fn an_smsc_that_leaves_nagle_on_gets_submits_as_fast_as_one_that_does_not() {
    let nodelay = submit_rate(false).await;
    let nagle = submit_rate(true).await;
    eprintln!("submit_sm/s: {nodelay:.0} with TCP_NODELAY, {nagle:.0} with Nagle on");
    assert!(
        nagle >= 0.5 * nodelay,
        "Nagle on: {nagle:.0} submit_sm/s, TCP_NODELAY: {nodelay:.0}/s"
    );
}
