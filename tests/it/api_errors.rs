//! Every error the message API can answer, in the JSON error shape, with the
//! right status, and never a 500.

use serde_json::{Value, json};

use crate::helpers::{TestApp, number};

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("error body is JSON");
    (
        status,
        v["error"]["code"].as_str().expect("code").to_string(),
        v["error"]["message"].as_str().expect("message").to_string(),
    )
}

#[tokio::test]
async fn missing_wrong_and_revoked_keys_are_401() {
    let app = TestApp::spawn().await;
    let body = json!({"to": number(1), "body": "hi"});
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(error_of(r).await.0, 401);
    let forged = format!("hk_{}_{}", "0".repeat(16), "0".repeat(64));
    let (status, code, _) = error_of(app.post_as(&forged, "/v1/messages", &body).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, _, _) = error_of(app.post_as("garbage", "/v1/messages", &body).await).await;
    assert_eq!(status, 401);
    // A real id with a wrong secret.
    let key = app.create_key("victim", "send").await;
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('0') { "1" } else { "0" }
    );
    assert_eq!(
        error_of(app.post_as(&wrong, "/v1/messages", &body).await)
            .await
            .0,
        401
    );
    // Revocation takes effect (the server drops its cache on revoke).
    let revokee = app.create_key("revokee", "send").await;
    assert_eq!(
        app.post_as(&revokee, "/v1/messages", &body).await.status(),
        202
    );
    let name = app.admin(herald::admin::AdminRequest::ApiKeyList).await;
    let herald::admin::AdminResponse::Ok(list) = name else {
        panic!("list failed");
    };
    let revokee_name = list
        .lines()
        .find(|l| l.starts_with("revokee-"))
        .and_then(|l| l.split('\t').next())
        .expect("revokee listed")
        .to_string();
    app.admin(herald::admin::AdminRequest::ApiKeyRevoke { name: revokee_name })
        .await;
    assert_eq!(
        error_of(app.post_as(&revokee, "/v1/messages", &body).await)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn scopes_are_enforced_with_403() {
    let app = TestApp::spawn().await;
    let otp_only = app.create_key("otp-only", "otp").await;
    let body = json!({"to": number(1), "body": "hi"});
    let (status, code, _) = error_of(app.post_as(&otp_only, "/v1/messages", &body).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let sender = app.create_key("sender", "send").await;
    let emergency = json!({"to": number(1), "body": "evacuate", "class": "emergency"});
    let (status, _, message) =
        error_of(app.post_as(&sender, "/v1/messages", &emergency).await).await;
    assert_eq!(status, 403);
    assert!(message.contains("broadcast"), "{message}");
    assert_eq!(app.post("/v1/messages", &emergency).await.status(), 202);
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_media_type_is_415() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{\"to\": ")
        .send()
        .await
        .expect("send");
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (400, "malformed_request"));
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(&app.key)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(error_of(r).await.0, 415);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = vec![
        (
            json!({"to": "07911123456", "body": "x"}),
            "invalid_to",
            "`to`",
        ),
        (json!({"to": "+44", "body": "x"}), "invalid_to", "`to`"),
        (
            json!({"to": "+999999999999", "body": "x"}),
            "invalid_to",
            "`to`",
        ),
        (json!({"to": number(1)}), "invalid_body", "`body`"),
        (
            json!({"to": number(1), "body": ""}),
            "invalid_body",
            "`body`",
        ),
        (json!({"body": "x"}), "invalid_request", "`to`"),
        (
            json!({"to": 447911123456u64, "body": "x"}),
            "invalid_field",
            "`to`",
        ),
        (
            json!({"to": number(1), "body": "x", "class": "spam"}),
            "invalid_field",
            "`class`",
        ),
        (
            json!({"to": number(1), "body": "x", "bdy": "typo"}),
            "invalid_field",
            "bdy",
        ),
        (
            json!({"to": number(1), "body": "x", "from": "WayTooLongSender"}),
            "invalid_from",
            "`from`",
        ),
        (
            json!({"to": number(1), "body": "x", "callback_url": "ftp://x"}),
            "invalid_callback_url",
            "`callback_url`",
        ),
        (
            json!({"to": number(1), "body": "x", "validity_seconds": 0}),
            "invalid_validity",
            "`validity_seconds`",
        ),
        (
            json!({"to": number(1), "body": "x", "validity_seconds": 99_999_999}),
            "invalid_validity",
            "`validity_seconds`",
        ),
        (
            json!({"to": number(1), "body": "x", "idempotency_key": ""}),
            "invalid_idempotency_key",
            "`idempotency_key`",
        ),
        (
            json!({"to": number(1), "template": "nope"}),
            "unknown_template",
            "`template`",
        ),
        (
            json!({"to": number(1), "body": "x", "vars": {"a": 1}}),
            "invalid_field",
            "`vars`",
        ),
        (
            json!({"to": number(1), "body": "x", "tags": ["", "b"]}),
            "invalid_tags",
            "`tags`",
        ),
        (json!([1, 2, 3]), "invalid_request", "JSON object"),
    ];
    for (body, code, names) in cases {
        let (status, got_code, message) = error_of(app.post("/v1/messages", &body).await).await;
        assert_eq!(status, 422, "{body}: {message}");
        assert_eq!(got_code, code, "{body}: {message}");
        assert!(
            message.contains(names),
            "{body}: '{message}' should name {names}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_413() {
    let app = TestApp::spawn().await;
    let huge = json!({"to": number(1), "body": "a".repeat(100_000)});
    let (status, code, _) = error_of(app.post("/v1/messages", &huge).await).await;
    assert_eq!((status, code.as_str()), (413, "too_large"));
    let messages: Vec<Value> = (0..10_001)
        .map(|_| json!({"to": number(1), "body": "x"}))
        .collect();
    let (status, _, message) = error_of(
        app.post("/v1/messages/batch", &json!({ "messages": messages }))
            .await,
    )
    .await;
    assert_eq!(status, 413);
    assert!(message.contains("10000"), "{message}");
    let (status, _, _) = error_of(
        app.post("/v1/messages/batch", &json!({ "messages": [] }))
            .await,
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn unknown_messages_and_routes_are_404_and_wrong_methods_405() {
    let app = TestApp::spawn().await;
    let (status, code, _) =
        error_of(app.get("/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert_eq!(
        error_of(app.get("/v1/messages/not-an-id").await).await.0,
        404
    );
    assert_eq!(error_of(app.get("/v1/nothing-here").await).await.0, 404);
    let r = app
        .client
        .delete(app.url("/v1/messages"))
        .send()
        .await
        .expect("send");
    assert_eq!(error_of(r).await.0, 405);
}

#[tokio::test]
async fn hostile_inputs_never_cause_a_500() {
    let app = TestApp::spawn().await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"\"string\"".to_vec(),
        b"{\"to\": null, \"body\": null}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"to\": \"+4479111234567890123456789012345678901234567890\", \"body\": \"x\"}".to_vec(),
        format!(
            "{{\"to\": \"{}\", \"body\": \"\\u0000\\ud83d\"}}",
            number(1)
        )
        .into_bytes(),
        b"{\"messages\": {}}".to_vec(),
        "{\"to\": \"+447911123456\", \"body\": \"x\", \"class\": [\"otp\"]}"
            .as_bytes()
            .to_vec(),
    ];
    for path in ["/v1/messages", "/v1/messages/batch"] {
        for body in &bodies {
            let r = app
                .client
                .post(app.url(path))
                .bearer_auth(&app.key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{path} {body:?} gave {status}"
            );
            let v: Value = r.json().await.expect("JSON error body");
            assert!(v["error"]["code"].is_string());
        }
    }
}

#[tokio::test]
async fn admissions_are_refused_with_503_while_shutting_down() {
    let app = TestApp::spawn().await;
    let base = app.base.clone();
    let key = app.key.clone();
    let client = app.client.clone();
    let _dir = app.stop().await;
    // The listener is gone: a connection error, never a 202 for an unstored message.
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"to": number(1), "body": "late"}))
        .send()
        .await;
    assert!(r.is_err() || r.is_ok_and(|r| r.status() == 503));
}
