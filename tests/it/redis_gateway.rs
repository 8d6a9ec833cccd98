//! Gateways on the Redis store over HTTP: one node serving the API, two
//! nodes sharing one workload and one set of limits, a Redis outage
//! answered with 503 and recovered from, and a node killed with SIGKILL
//! whose claimed messages another node delivers.

use std::time::{Duration, Instant};

use herald::bench::redis_server::Persistence;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestRedis, cli_api_key, number, serve};

/// The metrics page of the server at `base`.
async fn metrics_of(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Sum of every sample of `metric` in a Prometheus text page.
fn metric_sum(page: &str, metric: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_redis_serves_the_api() {
    let redis = TestRedis::start();
    let app = TestApp::spawn_on_redis(&redis, "solo", "").await;
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let mut ids = Vec::new();
    for (i, class) in ["otp", "transactional", "marketing", "emergency"]
        .iter()
        .enumerate()
    {
        ids.push(app.send_simple(i as u32, class).await);
    }
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"to": number(100 + i), "body": format!("batch {i}")}))
        .collect();
    let r = app
        .post("/v1/messages/batch", &json!({ "messages": batch }))
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    for a in v["accepted"].as_array().expect("accepted") {
        ids.push(a["id"].as_str().expect("id").to_string());
    }
    assert_eq!(ids.len(), 104);
    // Idempotent replays return the first message.
    let body = json!({"to": number(900), "body": "once", "idempotency_key": "k-1"});
    let first = app.send(body.clone()).await;
    let r = app.post("/v1/messages", &body).await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again: Value = r.json().await.expect("json");
    assert_eq!(again["id"], first["id"]);
    for id in &ids {
        let m = app.wait_final(id, Duration::from_secs(20)).await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["attempts"], 1);
    }
    assert!(app.metrics().await.contains("herald_queue_depth"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_workload_and_send_each_message_once() {
    let redis = TestRedis::start();
    let carrier =
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ndelay_ms = 5\nwindow = 8\ntps = 400\n";
    let a = TestApp::spawn_on_redis(&redis, "node-a", carrier).await;
    let b = TestApp::spawn_on_redis(&redis, "node-b", carrier).await;
    let mut ids = Vec::new();
    for round in 0..4u32 {
        for (n, app) in [&a, &b].into_iter().enumerate() {
            let batch: Vec<Value> = (0..50u32)
                .map(|i| json!({"to": number(round * 1000 + n as u32 * 100 + i), "body": "shared"}))
                .collect();
            let v: Value = app
                .post("/v1/messages/batch", &json!({ "messages": batch }))
                .await
                .json()
                .await
                .expect("json");
            for acc in v["accepted"].as_array().expect("accepted") {
                ids.push(acc["id"].as_str().expect("id").to_string());
            }
        }
    }
    assert_eq!(ids.len(), 400);
    for id in &ids {
        // Either node answers for any message.
        let m = b.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["attempts"], 1, "submitted once: {m}");
    }
    let submitted_a = metric_sum(&a.metrics().await, "herald_messages_submitted_total");
    let submitted_b = metric_sum(&b.metrics().await, "herald_messages_submitted_total");
    assert_eq!(submitted_a + submitted_b, 400.0, "no message sent twice");
    assert!(
        submitted_a > 0.0 && submitted_b > 0.0,
        "both nodes took work: {submitted_a} + {submitted_b}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_gateways() {
    let redis = TestRedis::start();
    let a = TestApp::spawn_on_redis(&redis, "node-a", "").await;
    let b = TestApp::spawn_on_redis(&redis, "node-b", "").await;
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let (client, base, key) = if i % 2 == 0 {
            (a.client.clone(), a.base.clone(), a.key.clone())
        } else {
            (b.client.clone(), b.base.clone(), b.key.clone())
        };
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("{base}/v1/messages"))
                .bearer_auth(key)
                .json(&json!({"to": number(7), "body": format!("alert {i}"), "class": "transactional"}))
                .send()
                .await
                .expect("send");
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            (r.status().as_u16(), retry)
        }));
    }
    let (mut accepted, mut limited) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            (202, _) => accepted += 1,
            (429, Some(secs)) => {
                // An hour, give or take the moments between the nodes' clocks.
                assert!(secs > 0 && secs <= 3601, "retry-after {secs}");
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (accepted, limited),
        (30, 30),
        "30 per hour across both nodes"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_answers_503_and_nothing_accepted_is_lost() {
    let mut redis = TestRedis::own(Persistence::AofAlways);
    let app = TestApp::spawn_on_redis(
        &redis,
        "solo",
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ndelay_ms = 5\ntps = 20\n",
    )
    .await;
    // A backlog the throttled carrier is still working through.
    let batch: Vec<Value> = (0..60u32)
        .map(|i| json!({"to": number(i), "body": "before the outage"}))
        .collect();
    let v: Value = app
        .post("/v1/messages/batch", &json!({ "messages": batch }))
        .await
        .json()
        .await
        .expect("json");
    let mut ids: Vec<String> = v["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 60);

    redis.server().stop();
    let started = Instant::now();
    let r = app
        .post(
            "/v1/messages",
            &json!({"to": number(500), "body": "during"}),
        )
        .await;
    assert_eq!(r.status(), 503, "never a 202 for an unstored message");
    let v: Value = r.json().await.expect("json error");
    assert_eq!(v["error"]["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered promptly"
    );
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let r = app.get(&format!("/v1/messages/{}", ids[0])).await;
    assert_eq!(r.status(), 503);

    redis.server().restart().expect("redis restarts");
    // Admission resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = app
            .post("/v1/messages", &json!({"to": number(501), "body": "after"}))
            .await;
        if r.status() == 202 {
            let v: Value = r.json().await.expect("json");
            ids.push(v["id"].as_str().expect("id").to_string());
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "admission never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        let m = app.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(m["status"], "delivered", "{m}");
    }
    app.stop().await;
}

fn node_config(
    dir: &std::path::Path,
    redis: &TestRedis,
    node: &str,
    sim: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{node}.toml"));
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{}[log]\nlevel = \"warn\"\n[scripts]\nenabled = false\n\
         [[connectors]]\nname = \"sim\"\nkind = \"sim\"\n{sim}\n",
        redis.store_toml(node)
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_dispatch_has_its_claims_delivered_by_another() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Node a's carrier takes a minute to answer a submit: whatever a claims
    // stays claimed until it dies.
    let slow = node_config(
        dir.path(),
        &redis,
        "a",
        "window = 16\nsubmit_delay_ms = 60000",
    );
    let fast = node_config(dir.path(), &redis, "b", "window = 16\ndelay_ms = 5");
    let key = cli_api_key(&slow, "takeover");
    let client = reqwest::Client::new();
    let mut a = serve(&slow);
    let batch: Vec<Value> = (0..40u32)
        .map(|i| json!({"to": number(i), "body": "take me over", "class": "otp"}))
        .collect();
    let ids = a.send_batch(&client, &key, batch).await;
    assert_eq!(ids.len(), 40);
    // Wait until node a holds a full window of claims.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if metric_sum(&metrics_of(&client, &a.base).await, "herald_queue_depth") <= 24.0 {
            break;
        }
        assert!(Instant::now() < deadline, "node a never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.child.kill().expect("SIGKILL node a");
    let _ = a.child.wait();
    let killed = Instant::now();

    let b = serve(&fast);
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m: Value = client
                .get(format!("{}/v1/messages/{id}", b.base))
                .bearer_auth(&key)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            if m["status"] == "delivered" {
                assert_eq!(m["attempts"], 1, "{m}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered after takeover: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The 16 node a held came back only once its 2 s lease lapsed.
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    let page = metrics_of(&client, &b.base).await;
    assert_eq!(metric_sum(&page, "herald_messages_submitted_total"), 40.0);
    drop(b);
}
