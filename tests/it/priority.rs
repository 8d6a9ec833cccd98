//! Strict priority over HTTP: higher classes overtake any backlog of lower
//! ones.

use std::time::Duration;

use herald::testing::eventually_async;
use serde_json::{Value, json};

use crate::helpers::{TestApp, number};

fn micros(v: &Value, field: &str) -> i64 {
    let text = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing: {v}"));
    let ts: jiff::Timestamp = text.parse().expect("timestamp");
    ts.as_microsecond()
}

#[tokio::test]
async fn higher_classes_overtake_a_lower_class_backlog() {
    // 20 submits per second, so the marketing backlog takes seconds to drain.
    let app = TestApp::spawn_with(
        "[[connectors]]\nname = \"sim\"\nkind = \"sim\"\ntps = 20\ndelay_ms = 1\nwindow = 64\n",
    )
    .await;
    let marketing: Vec<Value> = (0..60)
        .map(|i| json!({"to": number(i), "body": "sale", "class": "marketing"}))
        .collect();
    let r = app
        .post("/v1/messages/batch", &json!({ "messages": marketing }))
        .await;
    let v: Value = r.json().await.expect("json");
    let marketing_ids: Vec<String> = v["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(marketing_ids.len(), 60);
    // The backlog is draining before the urgent messages arrive.
    eventually_async(
        Duration::from_secs(10),
        "marketing submits begin",
        async || app.message(&marketing_ids[0]).await["status"] != "queued",
    )
    .await;
    // One batch, so all five become ready in the same commit.
    let classes = ["transactional", "otp", "emergency", "otp", "emergency"];
    let batch: Vec<Value> = classes
        .iter()
        .enumerate()
        .map(|(i, class)| json!({"to": number(100 + i as u32), "body": "urgent", "class": class}))
        .collect();
    let v: Value = app
        .post("/v1/messages/batch", &json!({ "messages": batch }))
        .await
        .json()
        .await
        .expect("json");
    let urgent: Vec<(String, String)> = v["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .map(|a| {
            (
                a["class"].as_str().expect("class").to_string(),
                a["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    assert_eq!(urgent.len(), 5);
    let mut lows = Vec::new();
    for id in &marketing_ids {
        lows.push(app.wait_final(id, Duration::from_secs(30)).await);
    }
    for (class, id) in &urgent {
        let high = app.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(high["status"], "delivered");
        let accepted = micros(&high, "created_at");
        let submitted = micros(&high, "submitted_at");
        // Marketing messages still waiting when this one arrived, but sent before it.
        let overtaken_by: Vec<&Value> = lows
            .iter()
            .filter(|l| {
                let ls = micros(l, "submitted_at");
                ls > accepted && ls < submitted
            })
            .collect();
        assert!(
            overtaken_by.len() <= 3,
            "{class} message waited behind {} marketing messages",
            overtaken_by.len()
        );
        // And the backlog was still there: it really overtook something.
        let later = lows
            .iter()
            .filter(|l| micros(l, "submitted_at") > submitted)
            .count();
        assert!(
            later > 10,
            "{class}: only {later} marketing messages left behind"
        );
    }
    // Among the urgent ones, emergency went before otp before transactional.
    let mut by_submit: Vec<(i64, String)> = Vec::new();
    for (class, id) in &urgent {
        let m = app.message(id).await;
        by_submit.push((micros(&m, "submitted_at"), class.clone()));
    }
    by_submit.sort();
    let order: Vec<&str> = by_submit.iter().map(|(_, c)| c.as_str()).collect();
    let rank = |c: &str| match c {
        "emergency" => 0,
        "otp" => 1,
        _ => 2,
    };
    assert!(
        order.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "submit order {order:?}"
    );
}
