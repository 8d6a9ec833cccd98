//! Supervision: the gateway's long-running tasks run under a supervisor; a
//! panic is counted, shown by `/readyz` while the task is down, and either
//! restarted or stops the gateway with the failure (so `herald serve` exits
//! non-zero).

use std::time::Duration;

use herald::supervise::TaskStatus;
use herald::testing::eventually_async;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app.get("/readyz").await;
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn every_long_running_task_is_supervised_and_a_panic_shows_until_it_restarts() {
    let app = TestApp::spawn().await;
    let supervisor = app.supervisor();
    let tasks = supervisor.tasks();
    for name in [
        "dispatcher/sim",
        "outcomes/sim",
        "receipts",
        "webhooks",
        "maintenance",
        "otp_purge",
    ] {
        assert_eq!(tasks.get(name), Some(&TaskStatus::Running), "{tasks:?}");
    }
    assert_eq!(readyz(&app).await.0, 200);

    // A task of the kind that is restarted, which panics once.
    let stop = CancellationToken::new();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    tokio::spawn(supervisor.restarting("probe", {
        let (stop, runs) = (stop.clone(), runs.clone());
        move || {
            let (stop, runs) = (stop.clone(), runs.clone());
            async move {
                if runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    panic!("probe failure");
                }
                stop.cancelled().await;
            }
        }
    }));
    eventually_async(
        Duration::from_secs(5),
        "readyz names the dead task",
        async || {
            let (status, body) = readyz(&app).await;
            status == 503 && body["problems"].to_string().contains("`probe`")
        },
    )
    .await;
    assert!(
        app.metrics()
            .await
            .contains("herald_task_panics_total{task=\"probe\"} 1"),
        "the panic is counted"
    );
    eventually_async(
        Duration::from_secs(10),
        "ready again once restarted",
        async || readyz(&app).await.0 == 200,
    )
    .await;
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    stop.cancel();
    app.stop().await;
}

#[tokio::test]
async fn a_task_that_cannot_be_restarted_stops_the_gateway_with_its_failure() {
    let app = TestApp::spawn().await;
    let supervisor = app.supervisor();
    tokio::spawn(supervisor.stopping("dispatcher/probe", async {
        panic!("lost track of claimed messages")
    }));
    let failure = app
        .wait_stopped()
        .await
        .expect_err("the gateway stopped on a failure");
    assert_eq!(failure.task, "dispatcher/probe");
    assert_eq!(failure.message, "lost track of claimed messages");
}
