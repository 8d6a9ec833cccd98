//! Inbound messages: keywords, storage, paging over HTTP, inbound webhooks.

use std::sync::Arc;
use std::time::Duration;

use herald::config::{InboundConfig, Secret};
use herald::connector::{Ack, ConnectorEvent, InboundMessage};
use herald::inbound::InboundHandler;
use herald::metrics::Metrics;
use herald::model::{Class, Status, now_micros};
use herald::model::{Receipt, ReceiptState};
use herald::recorder::record_receipts;
use herald::store::{EmbeddedStore, NewMessage, Outcome, Store};
use serde_json::Value;

use crate::helpers::TestApp;
use crate::webhooks::Capture;

fn mo(from: &str, body: &str) -> ConnectorEvent {
    ConnectorEvent::Inbound(
        InboundMessage {
            connector: "sim".into(),
            from: from.into(),
            to: "12345".into(),
            body: body.into(),
        },
        Ack::none(),
    )
}

/// Feeds inbound events through the receipt recorder into the store at `db`.
async fn deliver_inbound(
    db: &std::path::Path,
    events: Vec<ConnectorEvent>,
    webhook: Option<String>,
) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db, 8 << 20).expect("open"));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let settings = InboundConfig {
        // The gateway that delivers them holds the inbound secret.
        webhook_secret: webhook
            .as_ref()
            .map(|_| Secret::new(crate::webhooks::INBOUND_SECRET)),
        webhook_url: webhook,
        stop_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into()],
        start_keywords: vec!["START".into()],
    };
    let task = tokio::spawn(record_receipts(
        store.clone(),
        rx,
        Arc::new(Metrics::new()),
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
        &format!(
            "[inbound]\nwebhook_url = \"{url}\"\nwebhook_secret = \"{}\"\n{}",
            crate::webhooks::INBOUND_SECRET,
            crate::webhooks::ALLOW_LOOPBACK
        ),
    )
    .await;
    let got = capture.wait_for(1, Duration::from_secs(10)).await;
    let (headers, body) = &got[0];
    assert!(crate::webhooks::signed_by(
        crate::webhooks::INBOUND_SECRET,
        headers,
        body
    ));
    let v: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(v["body"], "hello");
}

#[tokio::test]
async fn receipts_and_inbound_messages_are_acked_after_their_store_write_and_refused_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("herald.db"), 8 << 20).expect("open"));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let recorder = tokio::spawn(record_receipts(
        store.clone(),
        rx,
        Arc::new(Metrics::new()),
        InboundHandler::new(InboundConfig {
            stop_keywords: vec!["STOP".into()],
            ..InboundConfig::default()
        }),
    ));
    // A message submitted as carrier id "s1", waiting for its receipt.
    let m = crate::store_conformance::message("sim", Class::Transactional, 1);
    store
        .admit(vec![NewMessage::plain(m.clone())])
        .await
        .expect("admit");
    store.claim("sim", 1).await.expect("claim");
    store
        .record(vec![Outcome::Submitted {
            id: m.id,
            connector: "sim".into(),
            smsc_ids: vec!["s1".into()],
            at: now_micros(),
        }])
        .await
        .expect("record");
    let receipt = |smsc_id: &str| Receipt {
        connector: "sim".into(),
        smsc_id: smsc_id.into(),
        state: ReceiptState::Delivered,
        error_code: None,
        at: now_micros(),
    };
    let inbound = |body: &str| InboundMessage {
        connector: "sim".into(),
        from: crate::helpers::number(7),
        to: "12345".into(),
        body: body.into(),
    };

    let (ack, receipt_stored) = Ack::channel();
    tx.send(ConnectorEvent::Receipt(receipt("s1"), ack))
        .await
        .expect("send");
    let (ack, mo_stored) = Ack::channel();
    tx.send(ConnectorEvent::Inbound(inbound("STOP"), ack))
        .await
        .expect("send");
    // Each ack comes only once its write is durable: what it acknowledges is
    // already in the store when it arrives.
    assert_eq!(mo_stored.await, Ok(true));
    let listed = store.inbound(None, 10).await.expect("inbound");
    assert_eq!(listed.len(), 1);
    assert!(store.is_opted_out(&listed[0].from).await.expect("opt-out"));
    assert_eq!(receipt_stored.await, Ok(true));
    let m = store.message(m.id).await.expect("read").expect("found");
    assert_eq!(m.status, Status::Delivered);

    // With the store gone nothing is acked as stored: the connector answers
    // ESME_RX_T_APPN and the carrier sends them again.
    store.close().await;
    let (ack, receipt_stored) = Ack::channel();
    tx.send(ConnectorEvent::Receipt(receipt("s2"), ack))
        .await
        .expect("send");
    let (ack, mo_stored) = Ack::channel();
    tx.send(ConnectorEvent::Inbound(inbound("hello"), ack))
        .await
        .expect("send");
    assert_eq!(mo_stored.await, Ok(false));
    assert_eq!(receipt_stored.await, Ok(false));
    drop(tx);
    recorder.await.expect("recorder");
}

#[tokio::test]
async fn a_key_sees_only_the_inbound_messages_sent_to_its_own_sender_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    let to = |to: &str, n: u32| {
        ConnectorEvent::Inbound(
            InboundMessage {
                connector: "sim".into(),
                from: crate::helpers::number(n),
                to: to.into(),
                body: format!("reply {n}"),
            },
            Ack::none(),
        )
    };
    let events = vec![
        to("12345", 0),
        to("447911100001", 1),
        to("12345", 2),
        to("447911100002", 3),
        to("12345", 4),
    ];
    deliver_inbound(&db, events, None).await;
    let app = TestApp::spawn_in(dir, "").await;
    let key = async |name: &str, senders: &str| match app
        .admin(herald::admin::AdminRequest::ApiKeyCreate {
            name: name.into(),
            scopes: "send".into(),
            senders: senders.into(),
        })
        .await
    {
        herald::admin::AdminResponse::Ok(t) => t.lines().next().unwrap_or_default().to_string(),
        herald::admin::AdminResponse::Err(e) => panic!("{e}"),
    };
    let short_code = key("short-code", "12345").await;
    let numbers = key("numbers", "+4479111*").await;
    let neither = key("neither", "").await;
    let page = async |key: &str, query: &str| -> Value {
        app.client
            .get(app.url(&format!("/v1/inbound{query}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json")
    };
    let bodies = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["body"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let first = page(&short_code, "?limit=2").await;
    assert_eq!(bodies(&first), ["reply 0", "reply 2"]);
    let after = first["next_after"].as_str().expect("next_after");
    let second = page(&short_code, &format!("?limit=2&after={after}")).await;
    assert_eq!(bodies(&second), ["reply 4"]);
    assert!(second["next_after"].is_null());
    assert_eq!(bodies(&page(&numbers, "").await), ["reply 1", "reply 3"]);
    assert!(bodies(&page(&neither, "").await).is_empty());
    assert_eq!(bodies(&page(&app.key, "").await).len(), 5, "admin sees all");
}
