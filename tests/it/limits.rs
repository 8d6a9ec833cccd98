//! Per-recipient limits and opt-outs over HTTP.

use serde_json::{Value, json};

use crate::helpers::{TestApp, number};
use herald::admin::AdminRequest;

async fn status_and_body(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, r.json().await.expect("json"))
}

#[tokio::test]
async fn otp_resend_inside_30s_is_rate_limited_with_retry_after() {
    let app = TestApp::spawn().await;
    let body = json!({"to": number(1), "body": "code 1234", "class": "otp"});
    assert_eq!(app.post("/v1/messages", &body).await.status(), 202);
    let (status, retry, v) = status_and_body(app.post("/v1/messages", &body).await).await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["code"], "rate_limited");
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((29..=30).contains(&secs), "Retry-After {secs}");
    // Another recipient, another class, and emergencies are not affected.
    assert_eq!(
        app.post(
            "/v1/messages",
            &json!({"to": number(2), "body": "x", "class": "otp"})
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        app.post("/v1/messages", &json!({"to": number(1), "body": "x"}))
            .await
            .status(),
        202
    );
    for _ in 0..10 {
        let r = app
            .post(
                "/v1/messages",
                &json!({"to": number(1), "body": "evacuate", "class": "emergency"}),
            )
            .await;
        assert_eq!(r.status(), 202, "limits never delay an emergency");
    }
    assert!(
        app.metrics()
            .await
            .contains("herald_rate_limited_total{class=\"otp\"} 1")
    );
}

#[tokio::test]
async fn parallel_requests_for_one_recipient_never_exceed_its_limit() {
    let app = TestApp::spawn().await;
    let body = json!({"to": number(3), "body": "alert", "class": "transactional"});
    let requests: Vec<_> = (0..45).map(|_| app.post("/v1/messages", &body)).collect();
    let mut accepted = 0;
    let mut limited = 0;
    for r in futures_util::future::join_all(requests).await {
        match r.status().as_u16() {
            202 => accepted += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (accepted, limited),
        (30, 15),
        "transactional allows 30 per hour"
    );
}

#[tokio::test]
async fn batch_items_over_the_limit_are_rejected_by_index() {
    let app = TestApp::spawn_with("[limits.marketing]\nper_day = 1\n").await;
    let v: Value = app
        .post(
            "/v1/messages/batch",
            &json!({"messages": [
                {"to": number(4), "body": "a", "class": "marketing"},
                {"to": number(4), "body": "b", "class": "marketing"},
                {"to": number(5), "body": "c", "class": "marketing"},
            ]}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["accepted"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["rejected"][0]["index"], 1);
    assert_eq!(v["rejected"][0]["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn configured_limits_replace_the_defaults() {
    let app = TestApp::spawn_with("[limits.otp]\nper_hour = 2\nmin_interval_seconds = 0\n").await;
    let body = json!({"to": number(6), "body": "code", "class": "otp"});
    assert_eq!(app.post("/v1/messages", &body).await.status(), 202);
    assert_eq!(app.post("/v1/messages", &body).await.status(), 202);
    let (status, retry, _) = status_and_body(app.post("/v1/messages", &body).await).await;
    assert_eq!(status, 429);
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((3599..=3600).contains(&secs), "{secs}");
}

#[tokio::test]
async fn marketing_to_an_opted_out_number_is_refused() {
    let app = TestApp::spawn().await;
    app.admin(AdminRequest::OptOut { number: number(7) }).await;
    let marketing = json!({"to": number(7), "body": "sale", "class": "marketing"});
    let (status, _, v) = status_and_body(app.post("/v1/messages", &marketing).await).await;
    assert_eq!(status, 422);
    assert_eq!(v["error"]["code"], "opted_out");
    // Other classes still reach them.
    assert_eq!(
        app.post("/v1/messages", &json!({"to": number(7), "body": "receipt"}))
            .await
            .status(),
        202
    );
    let v: Value = app
        .post(
            "/v1/messages/batch",
            &json!({"messages": [marketing.clone()]}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["rejected"][0]["error"]["code"], "opted_out");
    app.admin(AdminRequest::OptIn { number: number(7) }).await;
    assert_eq!(app.post("/v1/messages", &marketing).await.status(), 202);
}
