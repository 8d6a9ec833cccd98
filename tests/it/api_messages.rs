//! The message endpoints over real HTTP: send, batch, read, receipts,
//! encodings and segment counts, idempotency, operations endpoints.

use std::time::Duration;

use herald::testing::eventually_async;
use serde_json::{Value, json};

use crate::helpers::{TestApp, number};

#[tokio::test]
async fn a_message_is_accepted_submitted_and_delivered() {
    let app = TestApp::spawn().await;
    let accepted = app
        .send(json!({"to": number(1), "body": "Your parcel arrives today", "from": "Herald"}))
        .await;
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["class"], "transactional");
    assert_eq!(accepted["encoding"], "gsm7");
    assert_eq!(accepted["segments"], 1);
    let id = accepted["id"].as_str().expect("id");
    let m = app.wait_final(id, Duration::from_secs(10)).await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["to"], number(1));
    assert_eq!(m["from"], "Herald");
    assert_eq!(m["connector"], "sim");
    assert_eq!(m["smsc_message_ids"].as_array().map(Vec::len), Some(1));
    assert!(m["submitted_at"].is_string() && m["done_at"].is_string());
    assert!(m["error"].is_null());
}

#[tokio::test]
async fn failed_receipts_mark_the_message_failed() {
    let app = TestApp::spawn_with(
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ndelay_ms = 1\nfail_rate = 1.0\n",
    )
    .await;
    let id = app.send_simple(2, "transactional").await;
    let m = app.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(m["status"], "failed");
    assert!(
        m["error"]
            .as_str()
            .unwrap_or_default()
            .contains("undeliverable"),
        "{m}"
    );
}

async fn segments_of(app: &TestApp, body: &str) -> (String, u64) {
    let v = app.send(json!({"to": number(3), "body": body})).await;
    (
        v["encoding"].as_str().unwrap_or_default().to_string(),
        v["segments"].as_u64().unwrap_or_default(),
    )
}

#[tokio::test]
async fn encoding_and_segments_follow_gsm_and_ucs2_rules() {
    let app = TestApp::spawn().await;
    let cases: Vec<(String, &str, u64)> = vec![
        ("a".repeat(160), "gsm7", 1),
        ("a".repeat(161), "gsm7", 2),
        ("a".repeat(306), "gsm7", 2),
        ("a".repeat(307), "gsm7", 3),
        // Extension characters take two septets.
        (format!("{}€", "a".repeat(158)), "gsm7", 1),
        (format!("{}€", "a".repeat(159)), "gsm7", 2),
        ("{}".repeat(40), "gsm7", 1),
        ("{}".repeat(41), "gsm7", 2),
        ("ж".repeat(70), "ucs2", 1),
        ("ж".repeat(71), "ucs2", 2),
        ("ж".repeat(134), "ucs2", 2),
        ("ж".repeat(135), "ucs2", 3),
        // Emoji are outside the BMP: two UTF-16 units each.
        ("😀".repeat(35), "ucs2", 1),
        ("😀".repeat(36), "ucs2", 2),
        ("Héllo Δ £5 @ home".to_string(), "gsm7", 1),
    ];
    for (body, encoding, segments) in cases {
        let got = segments_of(&app, &body).await;
        assert_eq!(
            got,
            (encoding.to_string(), segments),
            "body of {} chars starting {:?}",
            body.chars().count(),
            body.chars().take(3).collect::<String>()
        );
    }
}

#[tokio::test]
async fn bodies_over_the_segment_limit_are_refused() {
    let app = TestApp::spawn_with("[messages]\nmax_segments = 2\n").await;
    assert_eq!(segments_of(&app, &"a".repeat(306)).await.1, 2);
    let r = app
        .post(
            "/v1/messages",
            &json!({"to": number(1), "body": "a".repeat(307)}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "body_too_long");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`body`")
    );
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_message() {
    let app = TestApp::spawn().await;
    let body = json!({"to": number(4), "body": "once", "idempotency_key": "order-42"});
    let first = app.post("/v1/messages", &body).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let second = app
        .post(
            "/v1/messages",
            &json!({"to": number(5), "body": "different", "idempotency_key": "order-42"}),
        )
        .await;
    assert_eq!(second.status(), 202);
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let second: Value = second.json().await.expect("json");
    assert_eq!(first["id"], second["id"]);
    let m = app.message(first["id"].as_str().expect("id")).await;
    assert_eq!(m["to"], number(4));
    assert!(
        app.metrics()
            .await
            .contains("herald_messages_accepted_total{class=\"transactional\"} 1\n")
    );

    // Keys are scoped per API key: another caller's same key is a new message.
    let other = app.create_key("other", "send").await;
    let r = app.post_as(&other, "/v1/messages", &body).await;
    let v: Value = r.json().await.expect("json");
    assert_ne!(v["id"], first["id"]);
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_create_one_message() {
    let app = TestApp::spawn().await;
    let body = json!({"to": number(6), "body": "race", "idempotency_key": "race-1"});
    let mut ids = Vec::new();
    let futures: Vec<_> = (0..20).map(|_| app.post("/v1/messages", &body)).collect();
    for r in futures_util::future::join_all(futures).await {
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("json");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn a_batch_accepts_valid_items_and_reports_invalid_ones_by_index() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/v1/messages/batch",
            &json!({"messages": [
                {"to": number(10), "body": "one"},
                {"to": "12345", "body": "bad number"},
                {"to": number(11), "body": "three", "class": "otp"},
                {"to": number(12)},
                {"to": number(13), "body": "x", "colour": "red"},
                {"to": number(14), "body": "y", "class": "spam"},
            ]}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    let accepted: Vec<u64> = v["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .map(|a| a["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(accepted, vec![0, 2]);
    assert_eq!(v["accepted"][1]["class"], "otp");
    let rejected: Vec<(u64, String)> = v["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["error"]["code"].as_str().expect("code").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "invalid_to".to_string()),
            (3, "invalid_body".to_string()),
            (4, "invalid_field".to_string()),
            (5, "invalid_field".to_string()),
        ]
    );
    for a in v["accepted"].as_array().expect("accepted") {
        let m = app
            .wait_final(a["id"].as_str().expect("id"), Duration::from_secs(10))
            .await;
        assert_eq!(m["status"], "delivered");
    }
}

#[tokio::test]
async fn a_full_batch_of_ten_thousand_is_accepted() {
    let app = TestApp::spawn().await;
    let messages: Vec<Value> = (0..10_000)
        .map(|i| json!({"to": number(i), "body": "bulk", "class": "marketing"}))
        .collect();
    let r = app
        .post("/v1/messages/batch", &json!({ "messages": messages }))
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["accepted"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(v["rejected"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_message_past_its_validity_expires_and_is_never_sent() {
    // One submit per second: the second message waits behind the first.
    let app = TestApp::spawn_with(
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ntps = 1\ndelay_ms = 1\n",
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let v = app
            .send(json!({"to": number(20 + i), "body": "soon stale", "validity_seconds": 1}))
            .await;
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let mut expired = 0;
    for id in &ids {
        let m = app.wait_final(id, Duration::from_secs(10)).await;
        match m["status"].as_str() {
            Some("expired") => {
                expired += 1;
                assert!(m["submitted_at"].is_null(), "expired but sent: {m}");
                assert!(m["smsc_message_ids"].as_array().is_some_and(Vec::is_empty));
            }
            Some("delivered") => {}
            other => panic!("unexpected status {other:?}: {m}"),
        }
    }
    assert!(expired >= 3, "only {expired} of 5 expired");
    // The sweeper records the expiry (and counts it) within a second or two.
    eventually_async(Duration::from_secs(5), "expiry counted", async || {
        app.metrics()
            .await
            .contains("herald_messages_expired_total")
    })
    .await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let app = TestApp::spawn().await;
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    app.send_simple(1, "otp").await;
    let metrics = app.metrics().await;
    for name in [
        "herald_queue_depth{class=\"emergency\"}",
        "herald_messages_accepted_total{class=\"otp\"} 1",
        "herald_admission_seconds_bucket",
        "herald_retry_depth",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"]["/v1/messages"]["post"].is_object());
}

#[tokio::test]
async fn messages_of_other_keys_are_not_visible() {
    let app = TestApp::spawn().await;
    let id = app.send_simple(1, "transactional").await;
    let other = app.create_key("reader", "send").await;
    let r = app
        .client
        .get(app.url(&format!("/v1/messages/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn messages_survive_a_graceful_restart() {
    let app = TestApp::spawn_with(
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ntps = 2\ndelay_ms = 1\n",
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(app.send_simple(i, "transactional").await);
    }
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, "").await;
    for id in &ids {
        let m = app.wait_final(id, Duration::from_secs(20)).await;
        assert_eq!(m["status"], "delivered", "{m}");
    }
}

#[tokio::test]
async fn the_e164_number_policy_accepts_numbers_outside_known_ranges() {
    // Well-formed, but in a range libphonenumber's metadata does not assign.
    let body = json!({"to": "+447700900123", "body": "alert"});
    let strict = TestApp::spawn().await;
    let r = strict.post("/v1/messages", &body).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_to", "{v}");
    strict.stop().await;

    let e164 = TestApp::spawn_with("[messages]\nnumber_policy = \"e164\"\n").await;
    let v = e164.send(body).await;
    let m = e164.message(v["id"].as_str().expect("id")).await;
    assert_eq!(m["to"], "+447700900123", "{m}");
    // A calling code that does not exist is still refused.
    let r = e164
        .post(
            "/v1/messages",
            &json!({"to": "+99912345678", "body": "alert"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    e164.stop().await;
}
