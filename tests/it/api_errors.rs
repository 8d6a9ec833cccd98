//! Every error the message API can answer, in the JSON error shape, with the
//! right status, and never a 500.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{RawRequest, TestApp, number};

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

/// Headers of a JSON request with `key` and a declared body length.
fn json_headers(key: &str, length: usize) -> Vec<String> {
    vec![
        format!("Authorization: Bearer {key}"),
        "Content-Type: application/json".to_string(),
        format!("Content-Length: {length}"),
    ]
}

#[tokio::test]
async fn admissions_are_refused_with_503_while_shutting_down() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({"to": number(1), "body": "late"})).expect("json");
    // A request in flight when the shutdown begins: the handler runs and
    // waits for the body (100 Continue says so).
    let mut headers = json_headers(&app.key, body.len());
    headers.push("Expect: 100-continue".into());
    let mut req = RawRequest::start(&app.addr(), "POST", "/v1/messages", &headers, b"").await;
    req.wait_continue(Duration::from_secs(5)).await;
    app.begin_stop();
    // Once new connections are refused the node has stopped admissions, yet
    // it waits for the request in flight.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(app.addr()).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    req.send(&body).await;
    let (status, headers, v) = req.response(Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("shutting down"),
        "{v}"
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_503_in_the_json_shape() {
    let app = TestApp::spawn_with("[http]\nrequest_timeout = \"1s\"\n").await;
    // A client that stalls in the middle of its body.
    let started = Instant::now();
    let req = RawRequest::start(
        &app.addr(),
        "POST",
        "/v1/messages",
        &json_headers(&app.key, 100),
        b"{\"to\": ",
    )
    .await;
    let (status, _, v) = req.response(Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Requests that finish in time are served as usual.
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_million_zeros_in_a_batch_is_413_at_once_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let mut body = String::with_capacity(2_000_020);
    body.push_str(r#"{"messages":["#);
    body.push_str(&vec!["0"; 1_000_000].join(","));
    body.push_str("]}");
    let started = Instant::now();
    let r = app
        .client
        .post(app.url("/v1/messages/batch"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let (status, code, message) = error_of(r).await;
    assert_eq!((status, code.as_str()), (413, "too_large"), "{message}");
    assert!(message.contains("10000"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    app.send(json!({"to": number(3), "body": "still here"}))
        .await;
}

#[tokio::test]
async fn batches_beyond_the_in_flight_budget_are_shed_with_503_and_retry_after() {
    // The budget holds exactly one largest batch.
    let app = TestApp::spawn_with(
        "[http]\nmax_batch_body_bytes = 65536\nmax_batch_bytes_in_flight = 65536\n",
    )
    .await;
    let small = json!({"messages": [{"to": number(4), "body": "small"}]});
    // A client announcing a largest batch and sending it slowly holds it all.
    let mut headers = json_headers(&app.key, 65_536);
    headers.push("Expect: 100-continue".into());
    let mut holder =
        RawRequest::start(&app.addr(), "POST", "/v1/messages/batch", &headers, b"").await;
    // Its share is reserved before its body is read.
    holder.wait_continue(Duration::from_secs(5)).await;
    holder.send(b"{\"messages\": [").await;
    let r = app.post("/v1/messages/batch", &small).await;
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    // Single messages are not held back by batches.
    app.send(json!({"to": number(5), "body": "single"})).await;
    // The holder goes away: its share returns and batches flow again.
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.post("/v1/messages/batch", &small).await;
        if r.status() == 202 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "budget not returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_rejection_answers_in_the_json_error_shape() {
    let app = TestApp::spawn().await;
    let key = app.key.clone();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        // Path: an id that does not decode names no message.
        (
            app.client.get(app.url("/v1/messages/%FF")),
            404,
            "not_found",
        ),
        (
            app.client.get(app.url("/v1/messages/%C3%28")),
            404,
            "not_found",
        ),
        // Query: a wrong type and an unknown parameter.
        (
            app.client.get(app.url("/v1/inbound?limit=many")),
            422,
            "invalid_query",
        ),
        (
            app.client.get(app.url("/v1/inbound?colour=red")),
            422,
            "invalid_query",
        ),
        // Json: syntax, type, media type, size.
        (
            app.client
                .post(app.url("/v1/messages"))
                .header("content-type", "application/json")
                .body("{"),
            400,
            "malformed_request",
        ),
        (
            app.client
                .post(app.url("/v1/messages"))
                .json(&json!({"to": 5, "body": "x"})),
            422,
            "invalid_field",
        ),
        (
            app.client
                .post(app.url("/v1/messages/batch"))
                .body("messages"),
            415,
            "unsupported_media_type",
        ),
        (
            app.client
                .post(app.url("/v1/messages"))
                .json(&json!({"to": number(1), "body": "a".repeat(70_000)})),
            413,
            "too_large",
        ),
        // Routing: unknown route, wrong method.
        (app.client.get(app.url("/v2/anything")), 404, "not_found"),
        (
            app.client.put(app.url("/v1/messages/batch")),
            405,
            "method_not_allowed",
        ),
        (
            app.client.post(app.url("/healthz")),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let request = request.bearer_auth(&key).build().expect("request");
        let what = format!("{} {}", request.method(), request.url());
        let r = app.client.execute(request).await.expect("send");
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert!(
            r.headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json")),
            "{what}"
        );
        let v: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
}

#[tokio::test]
async fn a_repeated_wrong_secret_is_refused_from_memory_without_another_verify() {
    let app = TestApp::spawn().await;
    let verifies = |text: &str, code: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("herald_auth_verifies_total{{code=\"{code}\"}} "))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let body = json!({"to": number(6), "body": "hi"});
    let key = app.create_key("target", "send").await;
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('0') { "1" } else { "0" }
    );
    for _ in 0..5 {
        let (status, code, _) = error_of(app.post_as(&wrong, "/v1/messages", &body).await).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    let metrics = app.metrics().await;
    assert_eq!(
        verifies(&metrics, "wrong"),
        1,
        "one argon2 run for five tries:\n{metrics}"
    );
    // A first-time verification of the right secret is not held back.
    let ok_before = verifies(&metrics, "ok");
    assert_eq!(app.post_as(&key, "/v1/messages", &body).await.status(), 202);
    let metrics = app.metrics().await;
    assert_eq!(verifies(&metrics, "ok"), ok_before + 1);
    // A different wrong secret for the same key is verified (and refused).
    let other = format!("{}{}", &key[..key.len() - 2], "ff");
    let other = if other == key {
        format!("{}{}", &key[..key.len() - 2], "ee")
    } else {
        other
    };
    assert_eq!(
        error_of(app.post_as(&other, "/v1/messages", &body).await)
            .await
            .0,
        401
    );
    assert_eq!(verifies(&app.metrics().await, "wrong"), 2);
}
