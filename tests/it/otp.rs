//! OTPs over HTTP against a real gateway and an SMSC simulator: the code is
//! read from what the SMSC received, never from Herald.

use std::time::Duration;

use herald::smsc_sim::{SimConfig, SmscSim};
use herald::testing::eventually_some;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, number};

const UK: &str = "+447911123456";

/// Templates from the repository; an SMPP connector to `port`; `extra` on top.
fn otp_config(port: u16, extra: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    format!(
        "[scripts]\nenabled = true\ndir = \"{root}/scripts\"\ntemplates_dir = \"{root}/templates\"\nwatch = false\n\
         [[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"herald\"\npassword = \"pw\"\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\n{extra}\n"
    )
}

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

async fn gateway(sim: &SmscSim, extra: &str) -> TestApp {
    TestApp::spawn_with(&otp_config(sim.local_addr().port(), extra)).await
}

async fn issue(app: &TestApp, body: Value) -> (u16, Value, Option<String>) {
    let r = app.post("/v1/otp", &body).await;
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.expect("json"), retry)
}

async fn verify(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.post("/v1/otp/verify", &body).await;
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// The code in the `nth` SMS the SMSC received for `to`.
async fn code_sent(sim: &SmscSim, to: &str, nth: usize) -> String {
    let digits = to.trim_start_matches('+').to_string();
    let text = eventually_some(
        Duration::from_secs(10),
        "the OTP SMS reaches the SMSC",
        async || {
            let texts: Vec<String> = sim
                .submitted()
                .into_iter()
                .filter(|s| s.destination_addr == digits)
                .map(|s| String::from_utf8_lossy(&s.short_message).to_string())
                .collect();
            texts.get(nth).cloned()
        },
    )
    .await;
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 4)
        .unwrap_or_else(|| panic!("no code in the SMS: {text}"))
        .to_string()
}

#[tokio::test]
async fn a_code_from_the_smsc_verifies_once_and_only_once() {
    let sim = sim().await;
    let app = gateway(&sim, "").await;
    let (status, otp, _) = issue(&app, json!({"to": UK, "app_name": "Shop"})).await;
    assert_eq!(status, 201, "{otp}");
    assert_eq!(otp["status"], "pending");
    assert_eq!(otp["attempts_remaining"], 5);
    let id = otp["id"].as_str().expect("id").to_string();
    let code = code_sent(&sim, UK, 0).await;
    assert_eq!(code.len(), 6);
    let sms = String::from_utf8_lossy(&sim.submitted()[0].short_message).to_string();
    assert!(sms.starts_with("Your Shop code is"), "{sms}");
    assert!(sms.contains("10 min"), "{sms}");

    let (status, v) = verify(&app, json!({"id": id, "code": code})).await;
    assert_eq!(status, 200);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["status"], "approved");
    let (_, again) = verify(&app, json!({"id": id, "code": code})).await;
    assert_eq!(
        again["valid"], false,
        "an approved OTP never verifies again"
    );
    assert_eq!(again["status"], "approved");

    // Status, with the delivery of its SMS.
    let got: Value = eventually_some(Duration::from_secs(10), "delivered", async || {
        let v: Value = app.get(&format!("/v1/otp/{id}")).await.json().await.ok()?;
        (v["delivery"] == "delivered").then_some(v)
    })
    .await;
    assert_eq!(got["status"], "approved");
    // The stored SMS shows the code masked, nowhere in clear.
    let message = app
        .message(got["message_id"].as_str().expect("message id"))
        .await;
    assert!(!message.to_string().contains(&code), "{message}");
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_codes_run_down_to_max_attempts_and_then_nothing_verifies() {
    let sim = sim().await;
    let app = gateway(&sim, "").await;
    let (_, otp, _) = issue(&app, json!({"to": UK, "length": 8})).await;
    let id = otp["id"].as_str().expect("id").to_string();
    let code = code_sent(&sim, UK, 0).await;
    assert_eq!(code.len(), 8);
    let wrong = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for left in (0..5).rev() {
        let (status, v) = verify(&app, json!({"id": id, "code": wrong})).await;
        assert_eq!(status, 200);
        assert_eq!(v["valid"], false);
        assert_eq!(v["attempts_remaining"], left, "{v}");
    }
    let (_, v) = verify(&app, json!({"id": id, "code": code})).await;
    assert_eq!(v["valid"], false, "exhausted never verifies");
    assert_eq!(v["status"], "max_attempts");
    // Unknown ids are 404; a number with no OTP answers like a dead code.
    let (status, _) = verify(&app, json!({"id": "01NOSUCHOTP", "code": "123456"})).await;
    assert_eq!(status, 404);
    let (status, v) = verify(&app, json!({"to": number(77), "code": "123456"})).await;
    assert_eq!((status, v["valid"].clone()), (200, json!(false)));
    let (status, v) = verify(&app, json!({"id": id, "code": "12ab"})).await;
    assert_eq!(status, 422, "{v}");
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_code_expires_after_its_ttl() {
    let sim = sim().await;
    let app = gateway(&sim, "").await;
    let (_, otp, _) = issue(&app, json!({"to": UK, "ttl_seconds": 1})).await;
    let id = otp["id"].as_str().expect("id").to_string();
    let code = code_sent(&sim, UK, 0).await;
    eventually_some(Duration::from_secs(5), "expired", async || {
        let v: Value = app.get(&format!("/v1/otp/{id}")).await.json().await.ok()?;
        (v["status"] == "expired").then_some(())
    })
    .await;
    let (_, v) = verify(&app, json!({"id": id, "code": code})).await;
    assert_eq!(
        (v["valid"].clone(), v["status"].clone()),
        (json!(false), json!("expired"))
    );
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_resend_replaces_the_old_code_within_the_recipient_limit() {
    let sim = sim().await;
    let app = gateway(
        &sim,
        "[limits.otp]\nmin_interval_seconds = 0\nper_hour = 2\n",
    )
    .await;
    let (_, first, _) = issue(&app, json!({"to": UK})).await;
    let old = code_sent(&sim, UK, 0).await;
    let (status, second, _) = issue(&app, json!({"to": UK})).await;
    assert_eq!(status, 201);
    let new = code_sent(&sim, UK, 1).await;
    // The old code stopped working; by number, the new one is pending.
    let (_, v) = verify(&app, json!({"id": first["id"], "code": old})).await;
    assert_eq!(
        (v["valid"].clone(), v["status"].clone()),
        (json!(false), json!("canceled"))
    );
    let (_, v) = verify(&app, json!({"to": UK, "code": new})).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["id"], second["id"]);
    // A third within the hour is over the recipient's limit.
    let (status, v, retry) = issue(&app, json!({"to": UK})).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(retry.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0)));
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_default_limit_allows_one_code_per_30_seconds_per_application() {
    let sim = sim().await;
    let app = gateway(&sim, "").await;
    let (status, _, _) = issue(&app, json!({"to": UK})).await;
    assert_eq!(status, 201);
    let (status, v, retry) = issue(&app, json!({"to": UK})).await;
    assert_eq!(status, 429, "{v}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    // Another application's budget for the number is its own.
    let other = app.create_key("other-app", "otp").await;
    let r = app.post_as(&other, "/v1/otp", &json!({"to": UK})).await;
    assert_eq!(r.status(), 201);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn otp_needs_the_otp_scope_on_both_endpoints() {
    let sim = sim().await;
    let app = gateway(&sim, "").await;
    let send_only = app.create_key("sender", "send").await;
    let r = app.post_as(&send_only, "/v1/otp", &json!({"to": UK})).await;
    assert_eq!(r.status(), 403);
    let r = app
        .post_as(
            &send_only,
            "/v1/messages",
            &json!({"to": UK, "body": "jump the queue", "class": "otp"}),
        )
        .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "forbidden");
    let otp_key = app.create_key("verifier", "otp").await;
    let r = app.post_as(&otp_key, "/v1/otp", &json!({"to": UK})).await;
    assert_eq!(r.status(), 201);
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn pumping_defence_countries_prefix_budget_and_app_cap() {
    let sim = sim().await;
    let app = gateway(
        &sim,
        "[limits.otp]\nmin_interval_seconds = 0\n[otp]\nallowed_countries = [\"GB\"]\nprefix_per_hour = 2\napp_per_hour = 3\nblock_min_issued = 0\n",
    )
    .await;
    let (status, v, _) = issue(&app, json!({"to": number(1)})).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "country_not_allowed");
    // Two per prefix 44740 (the calling code and three more digits).
    for n in ["+447400123401", "+447400123402"] {
        let (status, v, _) = issue(&app, json!({"to": n})).await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, v, retry) = issue(&app, json!({"to": "+447400123403"})).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "prefix_budget_exhausted");
    assert!(retry.is_some());
    // The third for the application, in another prefix, is its last.
    let (status, v, _) = issue(&app, json!({"to": "+447800123456"})).await;
    assert_eq!(status, 201, "{v}");
    let (status, v, _) = issue(&app, json!({"to": "+447800123457"})).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "app_budget_exhausted");
    let metrics = app.metrics().await;
    for code in [
        "country_not_allowed",
        "prefix_budget_exhausted",
        "app_budget_exhausted",
    ] {
        assert!(
            metrics.contains(&format!("herald_otp_refused_total{{code=\"{code}\"}} 1")),
            "{code}: {metrics}"
        );
    }
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_prefix_whose_codes_are_never_verified_is_blocked_until_unblocked() {
    let sim = sim().await;
    let app = gateway(
        &sim,
        "[limits.otp]\nmin_interval_seconds = 0\n[otp]\nblock_min_issued = 3\nblock_below_ratio = 0.5\n",
    )
    .await;
    // One verified of four issued in prefix 44791: conversion 25 %.
    for n in 1..=4u32 {
        let to = format!("+4479111234{n:02}");
        let (status, v, _) = issue(&app, json!({"to": to})).await;
        if n == 4 {
            assert_eq!(status, 429, "{v}");
            assert_eq!(v["error"]["code"], "prefix_blocked");
        } else {
            assert_eq!(status, 201, "{v}");
        }
        if n == 1 {
            let code = code_sent(&sim, &to, 0).await;
            let (_, v) = verify(&app, json!({"to": to, "code": code})).await;
            assert_eq!(v["valid"], true);
        }
    }
    // Other prefixes are not affected.
    let (status, _, _) = issue(&app, json!({"to": "+447400123457"})).await;
    assert_eq!(status, 201);
    let blocked: Value = app.get("/v1/otp/blocked").await.json().await.expect("json");
    assert_eq!(blocked[0]["prefix"], "44791", "{blocked}");
    assert!(
        app.metrics()
            .await
            .contains("herald_otp_total{code=\"prefix_blocked\"} 1")
    );
    let r = app
        .client
        .delete(app.url("/v1/otp/blocked/44791"))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let (status, v, _) = issue(&app, json!({"to": "+447911123409"})).await;
    assert_eq!(status, 201, "unblocked, and not blocked again at once: {v}");
    app.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_otp_can_be_read_and_canceled_only_by_its_application() {
    let sim = sim().await;
    let app = gateway(&sim, "").await;
    let (_, otp, _) = issue(&app, json!({"to": UK})).await;
    let id = otp["id"].as_str().expect("id");
    let code = code_sent(&sim, UK, 0).await;
    let stranger = app.create_key("stranger", "otp").await;
    let r = app
        .client
        .get(app.url(&format!("/v1/otp/{id}")))
        .bearer_auth(&stranger)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = app
        .post_as(&stranger, &format!("/v1/otp/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status(), 404);
    let r = app.post(&format!("/v1/otp/{id}/cancel"), &json!({})).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "canceled");
    let (_, v) = verify(&app, json!({"id": id, "code": code})).await;
    assert_eq!(
        (v["valid"].clone(), v["status"].clone()),
        (json!(false), json!("canceled"))
    );
    app.stop().await;
    sim.shutdown().await;
}

/// Everything an OTP flow leaves behind on disk: the trace-level log of a
/// real `herald serve` (SMPP PDU traces included) and the store's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clear_code_is_in_no_log_and_not_in_the_store_file() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("herald.db");
    let config = dir.path().join("herald.toml");
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [scripts]\nenabled = true\ndir = \"{root}/scripts\"\ntemplates_dir = \"{root}/templates\"\nwatch = false\n\
             [[connectors]]\nname = \"carrier\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             system_id = \"herald\"\npassword = \"Pw7x!Q9z\"\n",
            db.display(),
            sim.local_addr().port()
        ),
    )
    .expect("config");
    let key = crate::helpers::cli_api_key(&config, "app");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let served = crate::helpers::serve_logging(&config, Some("trace"), log.into());
    let client = reqwest::Client::new();
    let otp: Value = client
        .post(format!("{}/v1/otp", served.base))
        .bearer_auth(&key)
        .json(&json!({"to": UK, "length": 10}))
        .send()
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let id = otp["id"].as_str().expect("id").to_string();
    let code = code_sent(&sim, UK, 0).await;
    assert_eq!(code.len(), 10);
    let v: Value = eventually_some(
        Duration::from_secs(10),
        "submitted and verified",
        async || {
            let state: Value = client
                .get(format!("{}/v1/otp/{id}", served.base))
                .bearer_auth(&key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (state["delivery"] != "queued").then_some(state)
        },
    )
    .await;
    assert_ne!(v["delivery"], "queued");
    let verdict: Value = client
        .post(format!("{}/v1/otp/verify", served.base))
        .bearer_auth(&key)
        .json(&json!({"id": id, "code": code}))
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(verdict["valid"], true);
    drop(served);
    let log = std::fs::read_to_string(&log_path).expect("read log");
    assert!(log.contains("DEBUG"), "the log ran at trace level");
    assert!(
        log.contains("submit_sm") || log.contains("submitted"),
        "the submit is in the log"
    );
    assert!(!log.contains(&code), "the code is in the log");
    assert!(!log.contains("Pw7x!Q9z"), "the bind password is in the log");
    let file = std::fs::read(&db).expect("read store file");
    let found = file.windows(code.len()).any(|w| w == code.as_bytes());
    assert!(!found, "the clear code is in the store's file");
    sim.shutdown().await;
}

/// A reply as text: bulk strings as (lossy) UTF-8, arrays joined.
fn text_of(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().map(text_of).collect::<Vec<_>>().join(" ")
        }
        redis::Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{} {}", text_of(k), text_of(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    }
}

/// Every key and value under `prefix` in the Redis at `url`, as text.
async fn redis_dump(url: &str, prefix: &str) -> String {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        let mut read = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "set" => redis::cmd("SMEMBERS"),
            "zset" => {
                let mut c = redis::cmd("ZRANGE");
                c.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
                c
            }
            "list" => {
                let mut c = redis::cmd("LRANGE");
                c.arg(&key).arg(0).arg(-1);
                c
            }
            other => panic!("unexpected key type {other} of {key}"),
        };
        if matches!(kind.as_str(), "string" | "hash" | "set") {
            read.arg(&key);
        }
        let values: redis::Value = read.query_async(&mut conn).await.expect("read key");
        out.push_str(&format!("{key} = {}\n", text_of(&values)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_two_nodes_verifying_at_once_approve_once_and_no_key_holds_the_code() {
    let redis = crate::helpers::TestRedis::start();
    let sim = sim().await;
    let shared = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "{}[otp]\nseal_key_file = \"{}\"\n",
        otp_config(sim.local_addr().port(), ""),
        shared.path().join("seal.key").display()
    );
    let a = TestApp::spawn_on_redis(&redis, "a", &extra).await;
    let b = TestApp::spawn_on_redis(&redis, "b", &extra).await;
    let (status, otp, _) = issue(&a, json!({"to": UK, "length": 10})).await;
    assert_eq!(status, 201, "{otp}");
    let id = otp["id"].as_str().expect("id").to_string();
    let code = code_sent(&sim, UK, 0).await;
    // Submitted: the sealed text is gone from Redis, and the clear one was
    // never there.
    eventually_some(Duration::from_secs(10), "submitted", async || {
        let v: Value = b.get(&format!("/v1/otp/{id}")).await.json().await.ok()?;
        (v["delivery"] != "queued").then_some(())
    })
    .await;
    let dump = redis_dump(&redis.url, &redis.prefix).await;
    assert!(
        dump.contains(&id),
        "the dump holds the OTP {id}: {}",
        &dump[..dump.len().min(3000)]
    );
    assert!(!dump.contains(&code), "the clear code is in Redis");
    // Ten verifies at once, half on each node, each with a key of its own
    // node: exactly one approves.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        let request = node
            .client
            .post(node.url("/v1/otp/verify"))
            .bearer_auth(&a.key)
            .json(&json!({"id": id, "code": code}));
        tasks.push(tokio::spawn(async move {
            let v: Value = request
                .send()
                .await
                .expect("verify")
                .json()
                .await
                .expect("json");
            v["valid"] == true
        }));
    }
    let mut approvals = 0;
    for t in tasks {
        approvals += usize::from(t.await.expect("task"));
    }
    assert_eq!(approvals, 1);
    a.stop().await;
    b.stop().await;
    sim.shutdown().await;
}
