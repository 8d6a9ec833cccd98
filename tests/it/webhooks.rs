//! Status callbacks over real HTTP: signed, retried, durable across restarts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herald::testing::{eventually, eventually_async, eventually_some};
use serde_json::{Value, json};

use crate::helpers::{TestApp, number};

/// Config that lets webhooks reach the test receivers on 127.0.0.1.
pub const ALLOW_LOOPBACK: &str = "[webhooks]\nallow_destinations = [\"127.0.0.1\"]\n";

/// The inbound webhook secret of the tests (the Standard Webhooks example).
pub const INBOUND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Whether a delivery carries a valid Standard Webhooks signature by `secret`.
pub fn signed_by(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    herald::webhook::SigningKey::from_secret(secret).is_ok_and(|key| {
        key.verify(
            header("webhook-id"),
            header("webhook-timestamp"),
            body,
            header("webhook-signature"),
        )
    })
}

/// A webhook receiver on 127.0.0.1 that records what it gets and fails the
/// first `fail_first` requests with 500.
#[derive(Clone, Default)]
pub struct Capture {
    pub received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    pub attempts: Arc<Mutex<u32>>,
    pub fail_first: Arc<Mutex<u32>>,
}

async fn receive(State(c): State<Capture>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut attempts = c.attempts.lock().expect("lock");
    *attempts += 1;
    if *attempts <= *c.fail_first.lock().expect("lock") {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    c.received.lock().expect("lock").push((headers, body));
    StatusCode::OK
}

impl Capture {
    pub async fn start(fail_first: u32) -> (Capture, String) {
        let c = Capture::default();
        *c.fail_first.lock().expect("lock") = fail_first;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(c.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (c, url)
    }

    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<(HeaderMap, Bytes)> {
        eventually_some(limit, &format!("{n} webhooks"), async || {
            let got = self.received.lock().expect("lock").clone();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

#[tokio::test]
async fn final_statuses_are_posted_signed_with_the_keys_secret() {
    let app = TestApp::spawn_with(ALLOW_LOOPBACK).await;
    let (token, secret) = app.create_key_with_secret("hooked", "send").await;
    assert!(secret.starts_with("whsec_"));
    let (capture, url) = Capture::start(0).await;
    let r = app
        .post_as(
            &token,
            "/v1/messages",
            &json!({"to": number(1), "body": "hi", "callback_url": url}),
        )
        .await;
    let accepted: Value = r.json().await.expect("json");
    let got = capture.wait_for(1, Duration::from_secs(10)).await;
    let (headers, body) = &got[0];
    assert!(signed_by(&secret, headers, body), "{headers:?}");
    assert!(!signed_by(INBOUND_SECRET, headers, body));
    // The timestamp is now, in seconds: receivers refuse stale ones.
    let timestamp: i64 = headers
        .get("webhook-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("webhook-timestamp");
    assert!((jiff::Timestamp::now().as_second() - timestamp).abs() < 60);
    assert!(
        headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s.starts_with("v1,"))
    );
    assert_eq!(
        headers.get("x-herald-event").and_then(|v| v.to_str().ok()),
        Some("message.status")
    );
    let v: Value = serde_json::from_slice(body).expect("json body");
    assert_eq!(v["id"], accepted["id"]);
    assert_eq!(v["status"], "delivered");
}

#[tokio::test]
async fn failing_receivers_are_retried_with_backoff() {
    let app =
        TestApp::spawn_with("[webhooks]\nallow_destinations = [\"127.0.0.1\"]\nretry_base = \"50ms\"\nretry_max = \"200ms\"\n").await;
    let (capture, url) = Capture::start(3).await;
    app.send(json!({"to": number(2), "body": "hi", "callback_url": url}))
        .await;
    capture.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(*capture.attempts.lock().expect("lock"), 4);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("herald_webhook_deliveries_total{code=\"retried\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn pending_webhooks_survive_a_restart() {
    let app =
        TestApp::spawn_with("[webhooks]\nallow_destinations = [\"127.0.0.1\"]\nretry_base = \"100ms\"\nretry_max = \"100ms\"\n").await;
    // The receiver refuses everything until told otherwise.
    let (capture, url) = Capture::start(u32::MAX).await;
    app.send(json!({"to": number(3), "body": "hi", "callback_url": url}))
        .await;
    eventually(Duration::from_secs(5), "a first attempt", || {
        *capture.attempts.lock().expect("lock") >= 1
    })
    .await;
    let dir = app.stop().await;
    *capture.fail_first.lock().expect("lock") = 0;
    let _app = TestApp::spawn_in(
        dir,
        "[webhooks]\nallow_destinations = [\"127.0.0.1\"]\nretry_base = \"100ms\"\nretry_max = \"100ms\"\n",
    )
    .await;
    let got = capture.wait_for(1, Duration::from_secs(10)).await;
    let v: Value = serde_json::from_slice(&got[0].1).expect("json");
    assert_eq!(v["status"], "delivered");
}

#[tokio::test]
async fn a_webhook_still_failing_after_max_age_is_given_up() {
    let app = TestApp::spawn_with(
        "[webhooks]\nallow_destinations = [\"127.0.0.1\"]\nretry_base = \"100ms\"\nretry_max = \"100ms\"\nmax_age = \"1s\"\n",
    )
    .await;
    // A receiver that never succeeds.
    let (capture, url) = Capture::start(u32::MAX).await;
    app.send(json!({"to": number(4), "body": "hi", "callback_url": url}))
        .await;
    eventually_async(Duration::from_secs(10), "given up", async || {
        app.metrics()
            .await
            .contains("herald_webhook_deliveries_total{code=\"given_up\"} 1")
    })
    .await;
    let attempts = *capture.attempts.lock().expect("lock");
    assert!(attempts >= 2, "retried until max_age: {attempts} attempts");
    // Given up means no further attempts.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(*capture.attempts.lock().expect("lock"), attempts);
    assert!(capture.received.lock().expect("lock").is_empty());
}

/// A TLS front for `backend` with the test CA's `localhost` certificate;
/// returns its port.
async fn tls_front(backend: std::net::SocketAddr) -> u16 {
    use tokio_rustls::rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_fixture("server.pem"))
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).expect("server.key");
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// An HTTPS receiver (test CA, `localhost`) in front of a [`Capture`].
async fn https_capture() -> (Capture, String) {
    let (capture, url) = Capture::start(0).await;
    let backend: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .parse()
        .expect("capture address");
    let port = tls_front(backend).await;
    (capture, format!("https://localhost:{port}/hook"))
}

#[tokio::test]
async fn https_receivers_with_a_private_ca_get_callbacks() {
    let app = TestApp::spawn_with(&format!(
        "[webhooks]\nallow_destinations = [\"127.0.0.1\"]\ntls_ca = \"{}\"\n",
        tls_fixture("ca.pem").display()
    ))
    .await;
    let (capture, url) = https_capture().await;
    let accepted = app
        .send(json!({"to": number(5), "body": "hi", "callback_url": url}))
        .await;
    let got = capture.wait_for(1, Duration::from_secs(10)).await;
    let v: Value = serde_json::from_slice(&got[0].1).expect("json");
    assert_eq!(v["id"], accepted["id"]);
    assert_eq!(v["status"], "delivered");
}

#[tokio::test]
async fn https_receivers_with_an_unknown_ca_are_not_trusted() {
    let app =
        TestApp::spawn_with("[webhooks]\nallow_destinations = [\"127.0.0.1\"]\nretry_base = \"100ms\"\nretry_max = \"100ms\"\n").await;
    let (capture, url) = https_capture().await;
    app.send(json!({"to": number(6), "body": "hi", "callback_url": url}))
        .await;
    eventually_async(Duration::from_secs(10), "a failed attempt", async || {
        app.metrics()
            .await
            .contains("herald_webhook_deliveries_total{code=\"retried\"}")
    })
    .await;
    assert!(capture.received.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn callbacks_to_literal_inside_addresses_are_refused_at_admission() {
    let app = TestApp::spawn().await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/hook",
        "https://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0:8080/hook",
        "http://2130706433/hook",
    ] {
        let r = app
            .post(
                "/v1/messages",
                &json!({"to": number(7), "body": "hi", "callback_url": url}),
            )
            .await;
        assert_eq!(r.status(), 422, "{url}");
        let body: Value = r.json().await.expect("json");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("`callback_url`"), "{url}: {body}");
    }
}

#[tokio::test]
async fn names_that_resolve_inside_are_refused_after_resolution() {
    // `localhost` passes admission (it is a name) but resolves to loopback,
    // which this gateway does not allow: the receiver is never called.
    let app = TestApp::spawn().await;
    let (capture, url) = Capture::start(0).await;
    let port = url.trim_start_matches("http://127.0.0.1:");
    let url = format!("http://localhost:{port}");
    app.send(json!({"to": number(8), "body": "hi", "callback_url": url}))
        .await;
    eventually_async(
        Duration::from_secs(10),
        "the delivery refused",
        async || {
            app.metrics()
                .await
                .contains("herald_webhook_deliveries_total{code=\"refused_destination\"} 1")
        },
    )
    .await;
    assert_eq!(*capture.attempts.lock().expect("lock"), 0);
}

/// A receiver that accepts connections and never answers; counts them.
async fn tarpit() -> (Arc<Mutex<usize>>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/slow", listener.local_addr().expect("addr"));
    let connections = Arc::new(Mutex::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            *counted.lock().expect("lock") += 1;
            held.push(stream);
        }
    });
    (connections, url)
}

#[tokio::test]
async fn a_tarpitting_receiver_does_not_delay_other_callbacks() {
    let app = TestApp::spawn_with(
        "[webhooks]\nallow_destinations = [\"127.0.0.1\"]\nper_destination = 2\ntimeout = \"30s\"\n",
    )
    .await;
    let (tarpit_connections, slow_url) = tarpit().await;
    for n in 0..12 {
        app.send(json!({"to": number(100 + n), "body": "hi", "callback_url": slow_url}))
            .await;
    }
    eventually(Duration::from_secs(10), "two tarpit connections", || {
        *tarpit_connections.lock().expect("lock") >= 2
    })
    .await;
    // The tarpit holds its two slots; another owner's callback still goes
    // out at once.
    let (capture, fast_url) = Capture::start(0).await;
    let sent = tokio::time::Instant::now();
    app.send(json!({"to": number(99), "body": "hi", "callback_url": fast_url}))
        .await;
    capture.wait_for(1, Duration::from_secs(3)).await;
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert_eq!(
        *tarpit_connections.lock().expect("lock"),
        2,
        "at most per_destination deliveries to one receiver at once"
    );
    // The tarpit's waiting callbacks are not counted as failed attempts.
    let metrics = app.metrics().await;
    assert!(!metrics.contains("code=\"retried\""), "{metrics}");
}
