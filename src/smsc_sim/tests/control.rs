//! The HTTP control endpoint and the CLI arguments.

use clap::Parser;
use serde_json::{Value, json};

use super::*;
use crate::smsc_sim::{cli::SmscSimArgs, control::router};

async fn serve_control(sim: &SmscSim) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control");
    let addr = listener.local_addr().expect("control addr");
    let app = router(sim.handle());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = within(
        STEP,
        "POST",
        reqwest::Client::new().post(url).json(&body).send(),
    )
    .await
    .expect("POST");
    let status = response.status().as_u16();
    (
        status,
        within(STEP, "body", response.json())
            .await
            .expect("JSON body"),
    )
}

#[tokio::test]
async fn the_control_endpoint_injects_mo_sets_faults_and_reports_stats() {
    let sim = start(quick()).await;
    let base = serve_control(&sim).await;

    let (status, body) = post(
        &format!("{base}/mo"),
        json!({"from": "4917", "to": "123", "text": "hi"}),
    )
    .await;
    assert_eq!(status, 409, "no receiver yet: {body}");

    let mut esme = bound_transceiver(&sim, "acme").await;
    let (status, _) = post(
        &format!("{base}/mo"),
        json!({"from": "4917", "to": "123", "text": "hi"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        next_deliver_sm(&mut esme).await.short_message().as_ref(),
        b"hi"
    );

    let (status, _) = post(&format!("{base}/throttle"), json!({"tps": 7})).await;
    assert_eq!(status, 200);
    assert_eq!(sim.handle().throttle_tps(), 7);

    let (status, _) = post(&format!("{base}/reject-submits"), json!({"reject": true})).await;
    assert_eq!(status, 200);
    let result = within(
        STEP,
        "submit",
        esme.client.submit_sm(submit("4915", "no", 0)),
    )
    .await;
    assert_eq!(error_status(result), CommandStatus::EsmeRinvdstadr);
    let (status, _) = post(&format!("{base}/reject-submits"), json!({"reject": false})).await;
    assert_eq!(status, 200);
    submit_ok(&esme, submit("4915", "yes", 0)).await;

    let (status, _) = post(&format!("{base}/refuse-binds"), json!({"refuse": true})).await;
    assert_eq!(status, 200);
    let refused = connect(&sim).await;
    let result = within(
        STEP,
        "bind",
        refused.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await;
    assert_eq!(error_status(result), CommandStatus::EsmeRbindfail);

    let stats: Value = within(STEP, "GET /stats", async {
        reqwest::get(format!("{base}/stats")).await?.json().await
    })
    .await
    .expect("stats");
    assert_eq!(stats["mo_sent"], 1);
    assert_eq!(stats["bind_failures"], 1);
    assert_eq!(stats["sessions"][0]["system_id"], "acme");

    let (status, _) = post(&format!("{base}/drop"), json!({})).await;
    assert_eq!(status, 200);
    within(STEP, "dropped", esme.client.closed()).await;
    sim.shutdown().await;
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: SmscSimArgs,
}

#[test]
fn cli_defaults_listen_on_2775_with_no_faults() {
    let cli = Cli::try_parse_from(["smsc-sim"]).expect("defaults parse");
    assert_eq!(cli.args.listen.to_string(), "127.0.0.1:2775");
    let config = cli.args.config();
    assert_eq!(config.system_id, None);
    assert_eq!(config.fail_rate, 0.0);
    assert_eq!(config.throttle_tps, 0);
    assert!(!config.record, "benchmarks should not pay for recording");
}

#[test]
fn cli_flags_map_onto_the_config() {
    let cli = Cli::try_parse_from([
        "smsc-sim",
        "--listen",
        "127.0.0.1:0",
        "--system-id",
        "acme",
        "--password",
        "pw",
        "--dlr-delay-ms",
        "250",
        "--fail-rate",
        "0.25",
        "--throttle-tps",
        "100",
        "--control",
        "127.0.0.1:0",
    ])
    .expect("flags parse");
    let config = cli.args.config();
    assert_eq!(config.system_id.as_deref(), Some("acme"));
    assert_eq!(config.password.as_deref(), Some("pw"));
    assert_eq!(config.dlr_delay, std::time::Duration::from_millis(250));
    assert_eq!(config.fail_rate, 0.25);
    assert_eq!(config.throttle_tps, 100);
    assert!(cli.args.control.is_some());
}

#[test]
fn cli_rejects_a_fail_rate_outside_zero_to_one() {
    assert!(Cli::try_parse_from(["smsc-sim", "--fail-rate", "1.5"]).is_err());
    assert!(Cli::try_parse_from(["smsc-sim", "--fail-rate", "-0.1"]).is_err());
}

/// A port that was free a moment ago (the CLI prints its port on stdout, which a test
/// in the same process cannot read, so it is chosen up front).
async fn free_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test]
async fn the_cli_entry_point_serves_smpp_and_control_until_told_to_stop() {
    let (smpp, control) = (free_port().await, free_port().await);
    let cli = Cli::try_parse_from([
        "smsc-sim",
        "--listen",
        &smpp.to_string(),
        "--control",
        &control.to_string(),
        "--system-id",
        "acme",
        "--password",
        "pw",
        "--dlr-delay-ms",
        "10",
    ])
    .expect("flags parse");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(crate::smsc_sim::cli::run_until(cli.args, async move {
        let _ = stopped.await;
        Ok(())
    }));

    let stream = within(STEP, "connect", async {
        loop {
            match TcpStream::connect(smpp).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    let (client, events) = ConnectionBuilder::new()
        .no_enquire_link_interval()
        .response_timeout(STEP)
        .connected(stream);
    let mut esme = Esme {
        client,
        events: Box::new(events),
    };
    within(
        STEP,
        "bind",
        esme.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await
    .expect("bind");
    let id = submit_ok(&esme, submit("4915", "via the CLI", 1)).await;
    let receipt = next_deliver_sm(&mut esme).await;
    assert_eq!(receipted_message_id(&receipt).as_deref(), Some(id.as_str()));
    let stats: Value = within(STEP, "GET /stats", async {
        reqwest::get(format!("http://{control}/stats"))
            .await?
            .json()
            .await
    })
    .await
    .expect("stats");
    assert_eq!(stats["submits"], 1);

    let _ = stop.send(());
    within(STEP, "cli stopped", running)
        .await
        .expect("task")
        .expect("clean exit");
    within(STEP, "client closed", esme.client.closed()).await;
}

#[tokio::test]
async fn the_control_endpoint_lists_the_texts_sent_to_a_number() {
    let sim = start(quick()).await;
    let base = serve_control(&sim).await;
    let esme = bound_transceiver(&sim, "acme").await;
    submit_ok(&esme, submit("447400123456", "Your code is 4821", 0)).await;
    submit_ok(&esme, submit("447800123456", "someone else", 0)).await;
    submit_ok(&esme, submit("447400123456", "Your code is 9317", 0)).await;
    let texts: Vec<String> = within(
        STEP,
        "GET /submitted",
        reqwest::get(format!("{base}/submitted?to=%2B447400123456")),
    )
    .await
    .expect("GET")
    .json()
    .await
    .expect("JSON");
    assert_eq!(texts, ["Your code is 4821", "Your code is 9317"]);
}
