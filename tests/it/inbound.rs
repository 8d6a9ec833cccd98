//! Inbound messages: keywords, storage, paging over HTTP, inbound webhooks.

use std::sync::Arc;
use std::time::Duration;

use herald::connector::{ConnectorEvent, InboundMessage};
use herald::dispatch::record_receipts;
use herald::inbound::{InboundHandler, InboundSettings};
use herald::metrics::Metrics;
use herald::store::{EmbeddedStore, Store};
use serde_json::Value;

use crate::helpers::TestApp;
use crate::webhooks::Capture;

fn mo(from: &str, body: &str) -> ConnectorEvent {
    ConnectorEvent::Inbound(InboundMessage {
        connector: "sim".into(),
        from: from.into(),
        to: "12345".into(),
        body: body.into(),
    })
}

/// Feeds inbound events through the receipt recorder into the store at `db`.
async fn deliver_inbound(
    db: &std::path::Path,
    events: Vec<ConnectorEvent>,
    webhook: Option<String>,
) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db, 8 << 20).expect("open"));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let settings = InboundSettings {
        webhook_url: webhook,
        stop_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into()],
        start_keywords: vec!["START".into()],
    };
    let task = tokio::spawn(record_receipts(
        store.clone(),
        rx,
        Arc::new(Metrics::new()),
        None,
        InboundHandler::new(settings),
    ));
    for e in events {
        tx.send(e).await.expect("send");
    }
    drop(tx);
    task.await.expect("recorder");
    store.close().await;
}

#[tokio::test]
async fn stop_and_start_replies_toggle_marketing_opt_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    let n = crate::helpers::number(1);
    deliver_inbound(&db, vec![mo(&n, "  stop ")], None).await;
    let app = TestApp::spawn_in(dir, "").await;
    let marketing = serde_json::json!({"to": n, "body": "sale", "class": "marketing"});
    assert_eq!(app.post("/v1/messages", &marketing).await.status(), 422);
    let dir = app.stop().await;
    deliver_inbound(&db, vec![mo(&n, "START")], None).await;
    let app = TestApp::spawn_in(dir, "").await;
    assert_eq!(app.post("/v1/messages", &marketing).await.status(), 202);
}

#[tokio::test]
async fn inbound_messages_page_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    let events = (0..5)
        .map(|i| mo(&crate::helpers::number(i), &format!("reply {i}")))
        .collect();
    deliver_inbound(&db, events, None).await;
    let app = TestApp::spawn_in(dir, "").await;
    let page: Value = app
        .get("/v1/inbound?limit=3")
        .await
        .json()
        .await
        .expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["body"], "reply 0");
    let after = page["next_after"].as_str().expect("next_after");
    let page2: Value = app
        .get(&format!("/v1/inbound?limit=3&after={after}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page2["items"][1]["body"], "reply 4");
    assert!(page2["next_after"].is_null());
    assert_eq!(app.get("/v1/inbound?limit=0").await.status(), 422);
    assert_eq!(app.get("/v1/inbound?after=nope").await.status(), 422);
    assert_eq!(app.get("/v1/inbound?colour=red").await.status(), 422);
}

#[tokio::test]
async fn inbound_webhooks_are_delivered_signed() {
    let (capture, url) = Capture::start(0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    deliver_inbound(
        &db,
        vec![mo(&crate::helpers::number(9), "hello")],
        Some(url.clone()),
    )
    .await;
    let _app = TestApp::spawn_in(
        dir,
        &format!("[inbound]\nwebhook_url = \"{url}\"\nwebhook_secret = \"whsec_in\"\n"),
    )
    .await;
    let got = capture.wait_for(1, Duration::from_secs(10)).await;
    let (headers, body) = &got[0];
    let sig = headers
        .get("x-herald-signature")
        .and_then(|v| v.to_str().ok())
        .expect("signed");
    assert!(herald::webhook::verify("whsec_in", body, sig));
    let v: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(v["body"], "hello");
}
