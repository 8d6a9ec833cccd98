//! Fault tests of the SMPP path end to end: a real gateway (HTTP on
//! 127.0.0.1:0) with an `smpp` connector talking TCP to the in-process SMSC
//! simulator, which is told to misbehave: throttling storms, connections
//! reset mid-window, a restart, an outage (how soon submits resume), slow
//! receipts, refused binds, and a carrier that stays down while the route
//! has another.
//!
//! Every test checks the same contract (README, Delivery guarantee): each accepted message
//! reaches an SMSC at least once, none is lost, and resubmissions stay within
//! one window per injected fault. Messages go to distinct numbers so the
//! SMSC's log can be matched against the accepted set. Every wait is bounded.

use std::collections::HashMap;
use std::time::Duration;

use herald::smsc_sim::{SimConfig, SmscSim, SubmittedMessage};
use herald::testing::eventually;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, number};

/// Outstanding submit_sm per bind in these tests: the duplicate bound.
const WINDOW: usize = 16;
/// Longest any test waits for its messages to settle.
const SETTLE: Duration = Duration::from_secs(45);

async fn start_sim(config: SimConfig) -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SmscSim::start(listener, config).await
}

/// A simulator on a given port (restart on the address the gateway knows).
async fn start_sim_on(addr: std::net::SocketAddr, config: SimConfig) -> SmscSim {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return SmscSim::start(listener, config).await,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    }
}

fn sim_config(dlr_delay_ms: u64) -> SimConfig {
    SimConfig {
        dlr_delay: Duration::from_millis(dlr_delay_ms),
        ..SimConfig::default()
    }
}

/// One `[[connectors]]` entry for an SMSC on `port`, quick to reconnect.
fn smpp_connector(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[connectors]]\nname = \"{name}\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"herald\"\npassword = \"pw\"\nwindow = {WINDOW}\nreconnect_min = \"20ms\"\n\
         reconnect_max = \"200ms\"\nresponse_timeout = \"2s\"\nthrottle_pause = \"100ms\"\n{extra}\n"
    )
}

/// Quick retries so faults heal within the test's bounds (`max_attempts`
/// stays at its default).
const DISPATCH: &str = "[dispatch]\nretry_base = \"50ms\"\nretry_max = \"500ms\"\n";

/// Sends `count` messages to numbers `first..first+count` in one batch;
/// returns (id, to) of each.
async fn send(app: &TestApp, first: u32, count: u32) -> Vec<(String, String)> {
    send_bodies(app, first, count, |n| format!("fault test {n}")).await
}

/// Like [`send`], with long messages: three GSM parts each (406 characters,
/// 153 a part), concatenated with a UDH.
async fn send_long(app: &TestApp, first: u32, count: u32) -> Vec<(String, String)> {
    send_bodies(app, first, count, |n| {
        format!("{n:05} {}", "long fault test ".repeat(25))
    })
    .await
}

async fn send_bodies(
    app: &TestApp,
    first: u32,
    count: u32,
    body: impl Fn(u32) -> String,
) -> Vec<(String, String)> {
    let messages: Vec<Value> = (first..first + count)
        .map(|n| json!({"to": number(n), "body": body(n)}))
        .collect();
    let r = app
        .post("/v1/messages/batch", &json!({ "messages": messages }))
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    let accepted = v["accepted"].as_array().expect("accepted");
    assert_eq!(accepted.len(), count as usize, "{v}");
    accepted
        .iter()
        .zip(first..)
        .map(|(a, n)| (a["id"].as_str().expect("id").to_string(), number(n)))
        .collect()
}

/// Waits until every message's status is one of `want` (or panics after
/// [`SETTLE`]); returns the final records.
async fn settle(app: &TestApp, sent: &[(String, String)], want: &[&str]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut done: HashMap<String, Value> = HashMap::new();
    loop {
        for (id, _) in sent {
            if done.contains_key(id) {
                continue;
            }
            let m = app.message(id).await;
            if want.contains(&m["status"].as_str().unwrap_or_default()) {
                done.insert(id.clone(), m);
            }
        }
        if done.len() == sent.len() {
            return sent.iter().filter_map(|(id, _)| done.remove(id)).collect();
        }
        if tokio::time::Instant::now() > deadline {
            let stuck: Vec<&String> = sent
                .iter()
                .map(|(id, _)| id)
                .filter(|id| !done.contains_key(*id))
                .take(5)
                .collect();
            let sample = app.message(stuck[0]).await;
            panic!(
                "{} of {} messages not {want:?} after {SETTLE:?}; e.g. {sample}",
                sent.len() - done.len(),
                sent.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per destination: (concatenation reference, total parts) -> part number ->
/// times the SMSC took it.
type PartsSeen = HashMap<(u8, u8), HashMap<u8, usize>>;

/// The contract: every part of every accepted message reached an SMSC at
/// least once, and the resubmissions (duplicate parts) stay within
/// `max_duplicates`. Parts are told apart by their UDH (`05 00 03 ref total
/// seq`); all parts of one message must carry one reference, so the handset
/// can join them whichever try each came from.
fn assert_reached_once(
    sent: &[(String, String)],
    submitted: Vec<SubmittedMessage>,
    max_duplicates: usize,
) {
    let mut seen: HashMap<String, PartsSeen> = HashMap::new();
    for sm in submitted {
        let (reference, total, seq) = match sm.short_message.as_slice() {
            [0x05, 0x00, 0x03, reference, total, seq, ..] if sm.esm_class & 0x40 != 0 => {
                (*reference, *total, *seq)
            }
            _ => (0, 1, 1),
        };
        *seen
            .entry(format!("+{}", sm.destination_addr))
            .or_default()
            .entry((reference, total))
            .or_default()
            .entry(seq)
            .or_default() += 1;
    }
    let mut duplicates = 0;
    for (id, to) in sent {
        let Some(messages) = seen.get(to) else {
            panic!("{id} to {to} never reached an SMSC");
        };
        assert_eq!(
            messages.len(),
            1,
            "{id} to {to}: parts under more than one concatenation reference: {messages:?}"
        );
        for (&(_, total), parts) in messages {
            for seq in 1..=total {
                assert!(
                    parts.contains_key(&seq),
                    "{id} to {to}: part {seq} of {total} never reached an SMSC"
                );
            }
            duplicates += parts.values().map(|n| n - 1).sum::<usize>();
        }
    }
    assert!(
        duplicates <= max_duplicates,
        "{duplicates} duplicate submits, more than {max_duplicates}"
    );
}

/// How many of the SMSC's accepted submits were parts of long messages.
fn long_parts(sim: &SmscSim) -> usize {
    sim.submitted()
        .iter()
        .filter(|sm| sm.esm_class & 0x40 != 0)
        .count()
}

#[tokio::test]
async fn a_throttling_storm_delays_messages_but_loses_none() {
    let sim = start_sim(sim_config(10)).await;
    // 300 submit_sm (240 short messages, 20 of three parts) against an SMSC
    // taking 12 a second: the storm lasts about 25 s, and with the shipped
    // dispatch settings (retry after ~1 s, max_attempts 10) many messages are
    // throttled more often than max_attempts before the SMSC takes them.
    sim.set_throttle_tps(12);
    let app = TestApp::spawn_with(&smpp_connector("carrier", sim.local_addr().port(), "")).await;
    assert_eq!(app.config.dispatch.max_attempts, 10, "the shipped default");
    let mut sent = send(&app, 0, 240).await;
    sent.extend(send_long(&app, 1_000, 20).await);
    let done = settle(&app, &sent, &["delivered"]).await;
    assert!(done.iter().all(|m| m["connector"] == "carrier"));
    for m in done.iter().filter(|m| m["segments"] == 3) {
        assert_eq!(
            m["smsc_message_ids"].as_array().map(Vec::len),
            Some(3),
            "{m}"
        );
    }
    // Before throttled submits stopped counting as attempts, this storm
    // left messages queued behind ever longer backoffs, then failed them.
    assert!(
        sim.stats().throttled >= 1_000,
        "the storm was too mild: {:?}",
        sim.stats()
    );
    assert_eq!(long_parts(&sim), 60);
    // Throttled submits were refused by the SMSC and parts it took are never
    // sent again, so nothing was sent twice.
    assert_reached_once(&sent, sim.submitted(), 0);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn connections_reset_mid_window_lose_nothing() {
    let sim = start_sim(sim_config(20)).await;
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}{}",
        smpp_connector("carrier", sim.local_addr().port(), "")
    ))
    .await;
    // Slow the SMSC so resets land while submits are in flight.
    sim.set_throttle_tps(150);
    let mut sent = send(&app, 0, 400).await;
    sent.extend(send_long(&app, 1_000, 30).await);
    let mut resets = 0;
    for target in [50, 170, 290] {
        eventually(Duration::from_secs(20), "submits progress", || {
            sim.stats().submits >= target
        })
        .await;
        let connections = sim.stats().connections_total;
        sim.drop_connections();
        resets += 1;
        eventually(Duration::from_secs(10), "the connector reconnects", || {
            sim.stats().connections_total > connections && sim.stats().binds > resets
        })
        .await;
    }
    let done = settle(&app, &sent, &["delivered"]).await;
    assert_eq!(done.len(), 430);
    assert!(long_parts(&sim) >= 90);
    assert_reached_once(&sent, sim.submitted(), WINDOW * resets as usize);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_smsc_restart_loses_nothing() {
    let first = start_sim(sim_config(5)).await;
    let addr = first.local_addr();
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}{}",
        smpp_connector("carrier", addr.port(), "")
    ))
    .await;
    // Slow enough that a busy test machine still stops it part way.
    first.set_throttle_tps(100);
    let sent = send(&app, 0, 300).await;
    eventually(Duration::from_secs(20), "the first SMSC takes some", || {
        first.stats().submits >= 100
    })
    .await;
    // Stop the first SMSC before reading its log: submits it accepts while
    // shutting down would otherwise be missing from `before`.
    let first_log = first.handle();
    first.shutdown().await;
    let before = first_log.submitted();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = start_sim_on(addr, sim_config(5)).await;
    // Receipts the first SMSC still held died with it: those messages stay
    // "submitted", as with a real carrier that loses its receipt queue.
    settle(&app, &sent, &["submitted", "delivered"]).await;
    if before.len() < sent.len() {
        eventually(
            Duration::from_secs(20),
            "the new SMSC takes the rest",
            || second.stats().submits > 0,
        )
        .await;
    }
    let mut both = before;
    both.extend(second.submitted());
    assert_reached_once(&sent, both, WINDOW);
    app.stop().await;
    second.shutdown().await;
}

#[tokio::test]
async fn after_an_outage_the_first_submit_follows_the_smsc_within_a_second() {
    let first = start_sim(sim_config(5)).await;
    let addr = first.local_addr();
    // The connector's own reconnect schedule, not the quick one of the
    // other tests: its defaults are what this checks.
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}[[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsystem_id = \"herald\"\npassword = \"pw\"\nwindow = {WINDOW}\n",
        addr.port()
    ))
    .await;
    let before = send(&app, 0, 50).await;
    // Nothing in flight when the SMSC goes: every duplicate below would be
    // the reconnect's doing.
    settle(&app, &before, &["submitted", "delivered"]).await;
    let first_log = first.handle();
    first.shutdown().await;
    let during = send(&app, 50, 50).await;
    // The outage: long enough for the reconnect delays to reach their cap.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = start_sim_on(addr, sim_config(5)).await;
    let back = tokio::time::Instant::now();
    eventually(
        Duration::from_secs(10),
        "a submit after the SMSC is back",
        || second.stats().submits > 0,
    )
    .await;
    let gap = back.elapsed();
    assert!(
        gap <= Duration::from_secs(1),
        "first submit {gap:?} after the SMSC accepted binds again"
    );
    settle(&app, &during, &["submitted", "delivered"]).await;
    let mut all = before;
    all.extend(during);
    let mut submitted = first_log.submitted();
    submitted.extend(second.submitted());
    assert_reached_once(&all, submitted, 0);
    app.stop().await;
    second.shutdown().await;
}

#[tokio::test]
async fn slow_receipts_are_matched_when_they_come() {
    let sim = start_sim(sim_config(1_500)).await;
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}{}",
        smpp_connector("carrier", sim.local_addr().port(), "")
    ))
    .await;
    let sent = send(&app, 0, 100).await;
    // Everything is submitted long before the first receipt is due.
    settle(&app, &sent, &["submitted"]).await;
    assert_eq!(sim.stats().receipts_sent, 0);
    let done = settle(&app, &sent, &["delivered"]).await;
    for m in &done {
        assert_eq!(m["smsc_message_ids"].as_array().map(Vec::len), Some(1));
    }
    assert_reached_once(&sent, sim.submitted(), 0);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn receipts_faster_than_the_submit_record_are_still_matched() {
    // With no receipt delay the receipt often arrives before the store has
    // recorded the submit: the store keeps it and matches it later.
    let sim = start_sim(sim_config(0)).await;
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}{}",
        smpp_connector("carrier", sim.local_addr().port(), "")
    ))
    .await;
    let sent = send(&app, 0, 200).await;
    settle(&app, &sent, &["delivered"]).await;
    assert_reached_once(&sent, sim.submitted(), 0);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_binds_hold_messages_until_the_smsc_accepts_the_bind() {
    let sim = start_sim(sim_config(5)).await;
    sim.set_refuse_binds(true);
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}{}",
        smpp_connector("carrier", sim.local_addr().port(), "")
    ))
    .await;
    let sent = send(&app, 0, 50).await;
    eventually(Duration::from_secs(10), "binds refused", || {
        sim.stats().bind_failures >= 3
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503, "no bind is up, so not ready");
    for (id, _) in sent.iter().take(5) {
        assert_eq!(app.message(id).await["status"], "queued");
    }
    sim.set_refuse_binds(false);
    settle(&app, &sent, &["delivered"]).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_reached_once(&sent, sim.submitted(), 0);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_carrier_that_stays_down_hands_its_messages_to_the_next_on_the_route() {
    let down = start_sim(sim_config(5)).await;
    down.set_refuse_binds(true);
    let backup = start_sim(sim_config(5)).await;
    let app = TestApp::spawn_with(&format!(
        "{DISPATCH}failover_after = \"500ms\"\n[routing]\ndefault = [\"primary\", \"backup\"]\n{}{}",
        smpp_connector("primary", down.local_addr().port(), ""),
        smpp_connector("backup", backup.local_addr().port(), ""),
    ))
    .await;
    let sent = send(&app, 0, 100).await;
    let done = settle(&app, &sent, &["delivered"]).await;
    assert!(
        done.iter().all(|m| m["connector"] == "backup"),
        "{:?}",
        done.iter().map(|m| &m["connector"]).collect::<Vec<_>>()
    );
    assert!(down.submitted().is_empty());
    assert_reached_once(&sent, backup.submitted(), 0);
    app.stop().await;
    down.shutdown().await;
    backup.shutdown().await;
}
