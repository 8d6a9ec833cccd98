//! Broadcasts over HTTP against a real gateway and SMSC simulators: the
//! two-person rule, exercise vs live, cancel with exact counters (both
//! stores), progress events, restart mid-fan-out, priority over a backlog,
//! and spreading over connectors by their TPS caps. What reached the public
//! is read from what the SMSC received, never from Herald.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herald::smsc_sim::{SimConfig, SmscSim};
use herald::testing::{eventually_async, eventually_some};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, TestRedis, number};

async fn sim() -> SmscSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    SmscSim::start(
        listener,
        SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await
}

/// One SMPP connector per `(name, port, tps)`, all in the default route.
fn carriers(list: &[(&str, u16, u32)]) -> String {
    let mut toml = String::new();
    for (name, port, tps) in list {
        toml.push_str(&format!(
            "[[connectors]]\nname = \"{name}\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             system_id = \"herald\"\npassword = \"pw\"\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\ntps = {tps}\n"
        ));
    }
    let names: Vec<String> = list.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
    toml.push_str(&format!("[routing]\ndefault = [{}]\n", names.join(", ")));
    toml
}

/// Digits as the SMSC sees a test number.
fn digits(n: u32) -> String {
    number(n).trim_start_matches('+').to_string()
}

async fn put_group(app: &TestApp, name: &str, from: u32, count: u32) {
    let csv: String = (from..from + count).map(|n| number(n) + "\n").collect();
    let r = app
        .client
        .put(app.url(&format!("/v1/groups/{name}")))
        .bearer_auth(&app.key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn create(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let r = app.post_as(key, "/v1/broadcasts", &body).await;
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn act(app: &TestApp, key: &str, id: &str, what: &str) -> (u16, Value) {
    let r = app
        .post_as(key, &format!("/v1/broadcasts/{id}/{what}"), &json!({}))
        .await;
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn view(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// The counters add up to the total.
fn assert_adds_up(v: &Value) {
    let sum: u64 = [
        "queued",
        "submitted",
        "delivered",
        "failed",
        "expired",
        "canceled",
        "refused",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
    .sum();
    assert_eq!(Some(sum), v["total"].as_u64(), "counters add up: {v}");
}

async fn wait_status(app: &TestApp, id: &str, status: &str, limit: Duration) -> Value {
    eventually_some(limit, &format!("broadcast {status}"), async || {
        let v = view(app, id).await;
        assert_adds_up(&v);
        (v["status"] == status).then_some(v)
    })
    .await
}

#[tokio::test]
async fn two_people_approve_and_states_are_enforced() {
    let app = TestApp::spawn().await;
    let creator = app.create_key("creator", "broadcast").await;
    let approver = app.create_key("approver", "broadcast").await;
    let sender = app.create_key("sender", "send").await;
    let body = json!({
        "title": "Boil water notice",
        "body": "Boil water before drinking until further notice.",
        "recipients": [number(1), number(2), number(2), number(3)],
        "mode": "live",
    });
    // Scope, mode and class rules.
    assert_eq!(create(&app, &sender, body.clone()).await.0, 403);
    let mut no_mode = body.clone();
    no_mode.as_object_mut().expect("object").remove("mode");
    let (status, v) = create(&app, &creator, no_mode).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_mode")),
        "{v}"
    );
    let mut otp = body.clone();
    otp["class"] = json!("otp");
    assert_eq!(create(&app, &creator, otp).await.0, 422);
    let (status, v) = create(
        &app,
        &creator,
        json!({"title": "x", "body": "y", "groups": ["nobody"], "mode": "live"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("unknown_group")),
        "{v}"
    );

    let (status, b) = create(&app, &creator, body).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "pending_approval");
    assert_eq!(b["mode"], "live");
    assert_eq!(b["total"], 3, "duplicates count once: {b}");
    assert_adds_up(&b);
    let id = b["id"].as_str().expect("id");
    // Nothing leaves before approval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(view(&app, id).await["queued"], 3);
    // The creator cannot approve; another principal can, once.
    let (status, v) = act(&app, &creator, id, "approve").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{v}"
    );
    let (status, v) = act(&app, &approver, id, "approve").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "sending");
    assert!(v["decided_by"].as_str().expect("by").contains("approver"));
    assert_eq!(act(&app, &approver, id, "approve").await.0, 409);
    assert_eq!(act(&app, &approver, id, "reject").await.0, 409);
    let done = wait_status(&app, id, "completed", Duration::from_secs(10)).await;
    assert_eq!(done["queued"], 0, "{done}");
    // Receipts keep counting after completion.
    eventually_async(Duration::from_secs(10), "all delivered", async || {
        view(&app, id).await["delivered"] == 3
    })
    .await;
    assert_eq!(act(&app, &approver, id, "cancel").await.0, 409);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("herald_broadcast_fanned_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_broadcast_fanout_seconds_count"));
    assert_eq!(
        act(&app, &approver, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "approve")
            .await
            .0,
        404
    );
    // Rejected: nothing is sent, all counted canceled.
    let (_, b2) = create(
        &app,
        &creator,
        json!({"title": "t", "body": "b", "recipients": [number(9)], "mode": "live"}),
    )
    .await;
    let id2 = b2["id"].as_str().expect("id");
    let (status, v) = act(&app, &approver, id2, "reject").await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("rejected")),
        "{v}"
    );
    assert_eq!(v["canceled"], 1);
    assert_adds_up(&v);
    // History, newest first.
    let list: Value = app
        .get("/v1/broadcasts?limit=10")
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = list["broadcasts"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![id2, id]);
    // Every step is in the audit log, refusals included.
    let audit: Value = app
        .get("/v1/audit?limit=100")
        .await
        .json()
        .await
        .expect("json");
    let target = format!("broadcast:{id}");
    let steps: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["target"] == target.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["outcome"].as_str().unwrap_or_default().to_string(),
                e["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .rev()
        .collect();
    let step = |a: &str, o: &str, c: &str| (a.to_string(), o.to_string(), c.to_string());
    assert_eq!(
        steps,
        vec![
            step("broadcast_create", "ok", ""),
            step("broadcast_approve", "refused", "self_approval"),
            step("broadcast_approve", "ok", ""),
            step("broadcast_approve", "refused", "conflict"),
            step("broadcast_reject", "refused", "conflict"),
            step("broadcast_cancel", "refused", "conflict"),
        ],
        "{audit}"
    );
    let creator_entry = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["target"] == target.as_str() && e["action"] == "broadcast_create")
        .expect("create entry");
    assert!(
        creator_entry["principal"]
            .as_str()
            .expect("principal")
            .starts_with("key:creator"),
        "{creator_entry}"
    );
}

#[tokio::test]
async fn an_exercise_reaches_only_the_exercise_group_with_the_prefix() {
    let smsc = sim().await;
    let app = TestApp::spawn_with(&carriers(&[("carrier", smsc.local_addr().port(), 0)])).await;
    put_group(&app, "exercise", 100, 3).await;
    put_group(&app, "public", 200, 20).await;
    let (status, b) = create(
        &app,
        &app.key,
        json!({
            "title": "Tsunami drill",
            "body": "Tsunami warning: move to high ground.",
            "groups": ["public"],
            "recipients": [number(300)],
            "mode": "exercise",
            "requires_approval": false,
        }),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["mode"], "exercise");
    assert_eq!(b["total"], 3, "only the exercise group: {b}");
    assert!(b["text"].as_str().expect("text").starts_with("EXERCISE: "));
    let id = b["id"].as_str().expect("id");
    wait_status(&app, id, "completed", Duration::from_secs(10)).await;
    let sent = smsc.submitted();
    let to: HashSet<String> = sent.iter().map(|s| s.destination_addr.clone()).collect();
    let expected: HashSet<String> = (100..103).map(digits).collect();
    assert_eq!(to, expected, "nobody outside the exercise group");
    assert_eq!(sent.len(), 3);
    for s in &sent {
        assert!(
            String::from_utf8_lossy(&s.short_message).starts_with("EXERCISE: "),
            "prefixed"
        );
    }
    // Without an exercise group there is no exercise, and never a fallback.
    let app2 = TestApp::spawn().await;
    let (status, v) = create(
        &app2,
        &app2.key,
        json!({"title": "d", "body": "b", "recipients": [number(1)], "mode": "exercise"}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("exercise group")
    );
    smsc.shutdown().await;
}

/// Cancels a broadcast mid-send: what is not submitted never leaves, and
/// the counters add up exactly.
async fn cancel_mid_send(app: &TestApp, smsc: &SmscSim) {
    put_group(app, "city", 1000, 3000).await;
    let (status, b) = create(
        app,
        &app.key,
        json!({"title": "Evacuate", "body": "Evacuate zone A now.", "groups": ["city"],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    eventually_async(Duration::from_secs(10), "some submitted", async || {
        smsc.submitted().len() >= 100
    })
    .await;
    let (status, v) = act(app, &app.key, &id, "cancel").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "canceled");
    assert_adds_up(&v);
    assert!(v["canceled"].as_u64().expect("n") > 1000, "{v}");
    // In-flight submits finish; then nothing more leaves.
    let settled = eventually_some(Duration::from_secs(10), "settled", async || {
        let v = view(app, &id).await;
        assert_adds_up(&v);
        let left = v["queued"].as_u64().unwrap_or(1) + v["submitted"].as_u64().unwrap_or(1);
        (left == 0).then_some(v)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reached = smsc.submitted().len() as u64;
    assert_eq!(
        reached,
        settled["delivered"].as_u64().expect("d") + settled["failed"].as_u64().expect("f"),
        "the SMSC got exactly the messages counted as sent: {settled}"
    );
    assert_eq!(settled["canceled"].as_u64().expect("c") + reached, 3000);
    let again = view(app, &id).await;
    assert_eq!(again, settled, "nothing moves after a cancel");
}

#[tokio::test]
async fn cancel_mid_send_stops_the_rest_with_exact_counters() {
    let smsc = sim().await;
    let app = TestApp::spawn_with(&carriers(&[("carrier", smsc.local_addr().port(), 300)])).await;
    cancel_mid_send(&app, &smsc).await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn cancel_mid_send_on_redis_with_exact_counters() {
    let redis = TestRedis::start();
    let smsc = sim().await;
    let app = TestApp::spawn_on_redis(
        &redis,
        "node-a",
        &carriers(&[("carrier", smsc.local_addr().port(), 300)]),
    )
    .await;
    cancel_mid_send(&app, &smsc).await;
    smsc.shutdown().await;
}

#[tokio::test]
async fn two_nodes_approve_on_one_cancel_on_the_other() {
    let redis = TestRedis::start();
    let smsc = sim().await;
    let connectors = carriers(&[("carrier", smsc.local_addr().port(), 200)]);
    let a = TestApp::spawn_on_redis(&redis, "node-a", &connectors).await;
    let b = TestApp::spawn_on_redis(&redis, "node-b", &connectors).await;
    put_group(&a, "region", 5000, 2000).await;
    let (status, created) = create(
        &a,
        &a.key,
        json!({"title": "Flood", "body": "Flood warning for the river valley.",
               "groups": ["region"], "mode": "live"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    // Node b's key approves (another principal); node a's creator cannot.
    assert_eq!(act(&b, &a.key, &id, "approve").await.0, 403);
    let (status, v) = act(&b, &b.key, &id, "approve").await;
    assert_eq!(status, 200, "{v}");
    eventually_async(Duration::from_secs(10), "sending", async || {
        smsc.submitted().len() >= 200
    })
    .await;
    let (status, v) = act(&a, &a.key, &id, "cancel").await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("canceled")),
        "{v}"
    );
    let settled = eventually_some(Duration::from_secs(10), "settled", async || {
        let v = view(&a, &id).await;
        (v["queued"] == 0 && v["submitted"] == 0).then_some(v)
    })
    .await;
    assert_adds_up(&settled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_b = view(&b, &id).await;
    assert_eq!(
        on_b,
        view(&a, &id).await,
        "both nodes read the same counters"
    );
    assert_eq!(
        smsc.submitted().len() as u64,
        on_b["delivered"].as_u64().expect("d") + on_b["failed"].as_u64().expect("f")
    );
    let distinct: HashSet<String> = smsc
        .submitted()
        .iter()
        .map(|s| s.destination_addr.clone())
        .collect();
    assert_eq!(distinct.len(), smsc.submitted().len(), "no recipient twice");
    smsc.shutdown().await;
}

#[tokio::test]
async fn progress_streams_as_server_sent_events_until_final() {
    let smsc = sim().await;
    let app = TestApp::spawn_with(&carriers(&[("carrier", smsc.local_addr().port(), 500)])).await;
    put_group(&app, "town", 1, 1500).await;
    let (_, b) = create(
        &app,
        &app.key,
        json!({"title": "Heat", "body": "Heat alert: stay indoors.", "groups": ["town"],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    let id = b["id"].as_str().expect("id");
    let r = app.get(&format!("/v1/broadcasts/{id}/events")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let started = Instant::now();
    let mut r = r;
    let mut text = String::new();
    let mut events: Vec<(Duration, String, Value)> = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(10), r.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let kind = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_string();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).expect("json data");
                events.push((started.elapsed(), kind, v));
            }
        }
    }
    let (_, last_kind, last) = events.last().expect("events");
    assert_eq!(last_kind, "final", "ends with a final event");
    assert_eq!(last["status"], "completed");
    assert_adds_up(last);
    assert!(
        events.len() >= 3,
        "progress while sending: {}",
        events.len()
    );
    for w in events.windows(2) {
        assert!(
            w[1].0 - w[0].0 <= Duration::from_millis(1200),
            "at least one a second"
        );
        assert_adds_up(&w[1].2);
    }
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_restart_mid_fan_out_resumes_without_loss_or_a_second_copy() {
    let smsc = sim().await;
    let connectors = carriers(&[("carrier", smsc.local_addr().port(), 1000)]);
    let app = TestApp::spawn_with(&connectors).await;
    put_group(&app, "county", 10_000, 4000).await;
    let (_, b) = create(
        &app,
        &app.key,
        json!({"title": "Storm", "body": "Storm warning tonight.", "groups": ["county"],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    let id = b["id"].as_str().expect("id").to_string();
    eventually_async(Duration::from_secs(10), "under way", async || {
        smsc.submitted().len() >= 500
    })
    .await;
    let dir = app.stop().await;
    let at_stop = smsc.submitted().len();
    assert!(at_stop < 4000, "stopped mid-fan-out ({at_stop})");
    let app = TestApp::spawn_in(dir, &connectors).await;
    let done = wait_status(&app, &id, "completed", Duration::from_secs(30)).await;
    assert_eq!(done["total"], 4000);
    eventually_async(Duration::from_secs(10), "all at the SMSC", async || {
        smsc.submitted().len() >= 4000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = smsc.submitted();
    let mut per: HashMap<String, usize> = HashMap::new();
    for s in &sent {
        *per.entry(s.destination_addr.clone()).or_default() += 1;
    }
    assert_eq!(per.len(), 4000, "everyone reached");
    assert!(per.values().all(|n| *n == 1), "nobody twice");
    smsc.shutdown().await;
}

#[tokio::test]
async fn an_emergency_broadcast_overtakes_a_marketing_backlog() {
    let smsc = sim().await;
    let app = TestApp::spawn_with(&carriers(&[("carrier", smsc.local_addr().port(), 400)])).await;
    let backlog: Vec<Value> = (0..2000)
        .map(|i| json!({"to": number(20_000 + i), "body": "Sale!", "class": "marketing"}))
        .collect();
    let r = app
        .post("/v1/messages/batch", &json!({"messages": backlog}))
        .await;
    assert_eq!(r.status(), 202);
    eventually_async(Duration::from_secs(10), "backlog moving", async || {
        smsc.submitted().len() >= 50
    })
    .await;
    put_group(&app, "alert", 1, 100).await;
    let (status, b) = create(
        &app,
        &app.key,
        json!({"title": "Quake", "body": "Earthquake: drop, cover, hold on.", "groups": ["alert"],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id");
    wait_status(&app, id, "completed", Duration::from_secs(10)).await;
    let sent = smsc.submitted();
    let alert: HashSet<String> = (1..101).map(digits).collect();
    let positions: Vec<usize> = sent
        .iter()
        .enumerate()
        .filter(|(_, s)| alert.contains(&s.destination_addr))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len(), 100);
    let first = positions[0];
    let last = positions[99];
    // At most one window of marketing in flight goes between them.
    assert!(
        last - first < 100 + 64,
        "emergencies went out together ({first}..{last})"
    );
    assert!(sent.len() < 2100, "the backlog was not finished first");
    smsc.shutdown().await;
}

#[tokio::test]
async fn a_broadcast_spreads_over_connectors_by_their_tps_caps() {
    let slow = sim().await;
    let fast = sim().await;
    let app = TestApp::spawn_with(&carriers(&[
        ("slow", slow.local_addr().port(), 100),
        ("fast", fast.local_addr().port(), 400),
    ]))
    .await;
    put_group(&app, "nation", 1, 2500).await;
    let started = Instant::now();
    let (_, b) = create(
        &app,
        &app.key,
        json!({"title": "Alert", "body": "National alert test.", "groups": ["nation"],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    let id = b["id"].as_str().expect("id");
    wait_status(&app, id, "completed", Duration::from_secs(30)).await;
    let took = started.elapsed();
    let (s, f) = (slow.submitted().len(), fast.submitted().len());
    assert_eq!(s + f, 2500);
    assert!(s > 0, "the slow carrier took its share ({s}/{f})");
    assert!(
        f >= 2 * s,
        "the fast carrier took the larger share ({s}/{f})"
    );
    // Together 500/s: about 5 s, far below the 25 s the slow one alone needs.
    assert!(took < Duration::from_secs(15), "{took:?}");
    slow.shutdown().await;
    fast.shutdown().await;
}

#[tokio::test]
async fn marketing_broadcasts_respect_limits_and_count_refusals() {
    let app = TestApp::spawn_with("[limits.marketing]\nper_day = 1\n").await;
    // number(1) used its one marketing message today.
    app.send(json!({"to": number(1), "body": "promo", "class": "marketing"}))
        .await;
    let (status, b) = create(
        &app,
        &app.key,
        json!({"title": "Sale", "body": "Half price today.", "class": "marketing",
               "recipients": [number(1), number(2), number(3)],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id");
    let done = wait_status(&app, id, "completed", Duration::from_secs(10)).await;
    assert_eq!(done["refused"], 1, "{done}");
    assert_eq!(done["total"], 3);
}

#[tokio::test]
async fn a_connector_that_fails_mid_broadcast_hands_its_share_to_the_others() {
    let failing = sim().await;
    let steady = sim().await;
    let app = TestApp::spawn_with(&format!(
        "{}[dispatch]\nfailover_after = \"300ms\"\n",
        carriers(&[
            ("failing", failing.local_addr().port(), 300),
            ("steady", steady.local_addr().port(), 300),
        ])
    ))
    .await;
    put_group(&app, "metro", 1, 3000).await;
    let (_, b) = create(
        &app,
        &app.key,
        json!({"title": "Outage", "body": "Water outage in the metro area.", "groups": ["metro"],
               "mode": "live", "requires_approval": false}),
    )
    .await;
    let id = b["id"].as_str().expect("id");
    eventually_async(
        Duration::from_secs(10),
        "both carriers sending",
        async || failing.submitted().len() >= 100 && steady.submitted().len() >= 100,
    )
    .await;
    let failed = failing.handle();
    failing.shutdown().await;
    let before = failed.submitted();
    let done = wait_status(&app, id, "completed", Duration::from_secs(30)).await;
    assert_eq!(done["total"], 3000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reached: HashSet<String> = before
        .iter()
        .chain(steady.submitted().iter())
        .map(|s| s.destination_addr.clone())
        .collect();
    assert_eq!(
        reached.len(),
        3000,
        "everyone reached by one carrier or the other"
    );
    steady.shutdown().await;
}
