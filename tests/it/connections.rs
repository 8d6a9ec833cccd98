//! The HTTP listener's bounds: idle and slow connections are closed after
//! the header-read timeout, open connections are capped, and a real client
//! is served all the same.

use std::time::Duration;

use herald::testing::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

const LIMITS: &str = "[http]\nmax_connections = 8\nheader_read_timeout = \"1s\"\n";

/// Whether the server closes `stream` within `limit` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or similar before closing is fine.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_real_clients_still_served() {
    let app = TestApp::spawn_with(LIMITS).await;
    let addr = app.addr();
    // More idle sockets than the cap, and a few that trickle a header.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for s in &mut slow {
                let _ = s.write_all(b"X-Slow: 1\r\n").await;
            }
        }
        slow
    });
    // A real client is answered while they are held (once the idle ones
    // ahead of it have been let go).
    let started = tokio::time::Instant::now();
    let r = within(
        Duration::from_secs(10),
        "a real client served",
        reqwest::Client::new().get(app.url("/healthz")).send(),
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Every idle socket is closed by the server.
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(10)).await,
            "idle connection {i} still open"
        );
    }
    let mut slow = trickle.await.expect("trickle");
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "slow connection {i} still open"
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_idle_past_the_timeout_are_closed() {
    let app = TestApp::spawn_with(LIMITS).await;
    let mut s = TcpStream::connect(app.addr()).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Kept alive after the answer, then closed once idle for 1 s.
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn open_connections_never_exceed_the_cap() {
    let app =
        TestApp::spawn_with("[http]\nmax_connections = 4\nheader_read_timeout = \"30s\"\n").await;
    let addr = app.addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // The fifth connects (the kernel's backlog) but is not served while the
    // four stay open...
    let mut fifth = TcpStream::connect(&addr).await.expect("connect");
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), fifth.read(&mut buf))
            .await
            .is_err(),
        "served past the cap"
    );
    // ...and is as soon as one closes.
    drop(held.pop());
    let n = within(
        Duration::from_secs(5),
        "served once a slot freed",
        fifth.read(&mut buf),
    )
    .await
    .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
