//! The SMPP path end to end on good days: a real gateway (HTTP on
//! 127.0.0.1:0) with an `smpp` connector to the in-process SMSC simulator.
//! Faults are in `smpp_faults.rs`.

use std::time::Duration;

use herald::smsc_sim::{SimConfig, SmscSim};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, number};

async fn start_sim(config: SimConfig) -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SmscSim::start(listener, config).await
}

fn gateway_config(port: u16, extra: &str) -> String {
    format!(
        "[[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"herald\"\npassword = \"pw\"\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\n{extra}\n"
    )
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    until("the bind is up", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    sim.inject_mo(&from, "12345", "STOP").await.expect("inject");
    let item = until("the inbound message is stored", async || {
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
async fn readiness_follows_the_smpp_bind() {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_refuse_binds(true);
    let app = TestApp::spawn_with(&gateway_config(sim.local_addr().port(), "")).await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    sim.set_refuse_binds(false);
    until("ready once bound", async || {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    app.stop().await;
    sim.shutdown().await;
}
