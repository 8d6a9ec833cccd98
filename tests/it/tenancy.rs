//! Tenancy and authentication: what one API key may see and do, and how
//! keys stop working.

use std::time::Duration;

use herald::admin::{AdminRequest, AdminResponse};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestRedis, number};

/// Creates a key with exactly `name` through the admin socket.
async fn key_named(app: &TestApp, name: &str, scopes: &str) -> String {
    key_with_senders(app, name, scopes, "").await
}

/// Creates a key that may use the sender ids `senders` (comma-separated).
async fn key_with_senders(app: &TestApp, name: &str, scopes: &str, senders: &str) -> String {
    let request = AdminRequest::ApiKeyCreate {
        name: name.into(),
        scopes: scopes.into(),
        senders: senders.into(),
    };
    match app.admin(request).await {
        AdminResponse::Ok(text) => text.lines().next().unwrap_or_default().to_string(),
        AdminResponse::Err(e) => panic!("key not created: {e}"),
    }
}

async fn get_as(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request sent")
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn a_new_key_with_a_revoked_keys_name_inherits_none_of_its_messages() {
    let app = TestApp::spawn().await;
    let old = key_named(&app, "shop", "send").await;
    let body = json!({"to": number(1), "body": "first", "idempotency_key": "order-1"});
    let r = app.post_as(&old, "/v1/messages", &body).await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.expect("json");
    let id = first["id"].as_str().expect("id").to_string();
    match app
        .admin(AdminRequest::ApiKeyRevoke {
            name: "shop".into(),
        })
        .await
    {
        AdminResponse::Ok(_) => {}
        AdminResponse::Err(e) => panic!("not revoked: {e}"),
    }
    let new = key_named(&app, "shop", "send").await;
    let r = get_as(&app, &new, &format!("/v1/messages/{id}")).await;
    assert_eq!(
        r.status(),
        404,
        "the old key's message is not the new key's"
    );
    let r = app.post_as(&new, "/v1/messages", &body).await;
    assert_eq!(r.status(), 202);
    let second: Value = r.json().await.expect("json");
    assert_ne!(
        second["id"], first["id"],
        "the old key's idempotency key is not reused"
    );
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_every_node_within_a_second() {
    let redis = TestRedis::start();
    let a = TestApp::spawn_on_redis(&redis, "node-a", "").await;
    let b = TestApp::spawn_on_redis(&redis, "node-b", "").await;
    let key = a.create_key("revoked-soon", "send").await;
    let name = {
        // The helper makes names unique: find this key's.
        let store = herald::server::open_store(&a.config, herald::store::Role::Client)
            .await
            .expect("store");
        let keys = store.api_keys().await.expect("keys");
        store.close().await;
        let id = key.split('_').nth(1).expect("id").to_string();
        keys.into_iter().find(|k| k.id == id).expect("key").name
    };
    for node in [&a, &b] {
        assert_eq!(get_as(node, &key, "/v1/inbound").await.status(), 200);
    }
    let store = herald::server::open_store(&a.config, herald::store::Role::Client)
        .await
        .expect("store");
    let revoked = herald::admin::execute(&*store, &AdminRequest::ApiKeyRevoke { name }).await;
    store.close().await;
    assert!(matches!(revoked, AdminResponse::Ok(_)), "{revoked:?}");
    herald::testing::eventually_async(
        Duration::from_secs(1),
        "revoked on both nodes",
        async || {
            get_as(&a, &key, "/v1/inbound").await.status() == 401
                && get_as(&b, &key, "/v1/inbound").await.status() == 401
        },
    )
    .await;
}

#[tokio::test]
async fn wrong_secrets_for_one_key_are_throttled_and_leave_verifications_to_others() {
    let app = TestApp::spawn().await;
    let victim = app.create_key("victim", "send").await;
    let id = victim.split('_').nth(1).expect("id").to_string();
    assert_eq!(get_as(&app, &victim, "/v1/inbound").await.status(), 200);
    let before = metric(
        &app.metrics().await,
        "herald_auth_verifies_total{code=\"wrong\"}",
    );
    let mut guesses = Vec::new();
    for _ in 0..40 {
        let token = format!("hk_{id}_{}", herald::auth::random_hex(32).expect("rng"));
        let client = app.client.clone();
        let url = app.url("/v1/inbound");
        guesses.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // A good key verified for the first time is not stuck behind them.
    let good = app.create_key("good", "send").await;
    let status = herald::testing::within(Duration::from_secs(5), "good key verified", async {
        get_as(&app, &good, "/v1/inbound").await.status()
    })
    .await;
    assert_eq!(status, 200);
    for g in guesses {
        assert_eq!(g.await.expect("task").expect("answered"), 401);
    }
    let wrong = metric(
        &app.metrics().await,
        "herald_auth_verifies_total{code=\"wrong\"}",
    ) - before;
    assert!(
        wrong <= u64::from(herald::auth::FAIL_BURST) + 3,
        "{wrong} argon2 runs for wrong secrets of one key"
    );
    // The real key, verified before the guessing, still works.
    assert_eq!(get_as(&app, &victim, "/v1/inbound").await.status(), 200);
}

/// Sends `from` as `key`; the status and the error code, if any.
async fn send_from(app: &TestApp, key: &str, n: u32, from: Option<&str>) -> (u16, String) {
    let mut body = json!({"to": number(n), "body": "hello"});
    if let Some(from) = from {
        body["from"] = json!(from);
    }
    let r = app.post_as(key, "/v1/messages", &body).await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    if status == 422 {
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`from`"),
            "the refusal names `from`: {message}"
        );
    }
    (status, code)
}

#[tokio::test]
async fn a_key_sends_only_as_its_own_sender_ids() {
    let app = TestApp::spawn().await;
    let shop = key_with_senders(&app, "shop", "send", "SHOP*,+4479111*").await;
    let plain = key_named(&app, "plain", "send").await;
    assert_eq!(send_from(&app, &shop, 1, Some("SHOP")).await.0, 202);
    assert_eq!(send_from(&app, &shop, 2, Some("shop-uk")).await.0, 202);
    assert_eq!(
        send_from(&app, &shop, 3, Some("+447911100001")).await.0,
        202
    );
    assert_eq!(send_from(&app, &shop, 4, None).await.0, 202);
    let refused = (422, "forbidden_from".to_string());
    assert_eq!(send_from(&app, &shop, 5, Some("BANK")).await, refused);
    assert_eq!(
        send_from(&app, &shop, 6, Some("+447800100001")).await,
        refused
    );
    // A key given no sender ids sends only as the default sender.
    assert_eq!(send_from(&app, &plain, 7, None).await.0, 202);
    assert_eq!(send_from(&app, &plain, 8, Some("SHOP")).await, refused);
    // Admin keys may use any sender id.
    assert_eq!(send_from(&app, &app.key, 9, Some("BANK")).await.0, 202);
}

#[tokio::test]
async fn reserved_sender_ids_need_the_broadcast_scope() {
    let app = TestApp::spawn_with("[senders]\nreserved = [\"GOV*\"]\n").await;
    let sender = key_with_senders(&app, "not-gov", "send", "GOV*").await;
    let broadcaster = key_with_senders(&app, "gov", "send,broadcast", "GOV*").await;
    let (status, code) = send_from(&app, &sender, 1, Some("GOV-ALERT")).await;
    assert_eq!((status, code.as_str()), (422, "forbidden_from"));
    assert_eq!(
        send_from(&app, &broadcaster, 2, Some("gov-alert")).await.0,
        202
    );
}
