//! Binds: credentials, bind kinds, refusal, and what may be sent before a bind.

use rusmpp::CommandStatus;

use super::*;
use crate::smsc_sim::BindKind;

fn with_credentials() -> SimConfig {
    SimConfig {
        system_id: Some("acme".into()),
        password: Some("secret".into()),
        ..quick()
    }
}

#[tokio::test]
async fn bind_with_the_configured_credentials_is_accepted_and_names_the_smsc() {
    let sim = start(with_credentials()).await;
    let esme = connect(&sim).await;

    let resp = within(
        STEP,
        "bind",
        esme.client.bind_transceiver(transceiver("acme", "secret")),
    )
    .await
    .expect("bind accepted");

    assert_eq!(resp.system_id.as_str(), "HERALD_SIM");
    let stats = sim.stats();
    assert_eq!(stats.binds, 1);
    assert_eq!(stats.sessions.len(), 1);
    assert_eq!(stats.sessions[0].system_id.as_deref(), Some("acme"));
    assert_eq!(stats.sessions[0].bind, Some(BindKind::Transceiver));
    sim.shutdown().await;
}

#[tokio::test]
async fn bind_with_a_wrong_password_is_refused_with_esme_rinvpaswd() {
    let sim = start(with_credentials()).await;
    let esme = connect(&sim).await;

    let result = within(
        STEP,
        "bind",
        esme.client.bind_transceiver(transceiver("acme", "wrong")),
    )
    .await;

    assert_eq!(error_status(result), CommandStatus::EsmeRinvpaswd);
    assert_eq!(sim.stats().bind_failures, 1);
    assert_eq!(sim.stats().binds, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn bind_with_an_unknown_system_id_is_refused_with_esme_rinvsysid() {
    let sim = start(with_credentials()).await;
    let esme = connect(&sim).await;

    let result = within(
        STEP,
        "bind",
        esme.client.bind_transmitter(transmitter("other", "secret")),
    )
    .await;

    assert_eq!(error_status(result), CommandStatus::EsmeRinvsysid);
    sim.shutdown().await;
}

#[tokio::test]
async fn any_credentials_bind_every_kind_when_none_are_configured() {
    let sim = start(quick()).await;
    let tx = connect(&sim).await;
    let rx = connect(&sim).await;
    let trx = connect(&sim).await;

    within(
        STEP,
        "bind tx",
        tx.client.bind_transmitter(transmitter("a", "x")),
    )
    .await
    .expect("tx");
    within(STEP, "bind rx", rx.client.bind_receiver(receiver("b", "y")))
        .await
        .expect("rx");
    within(
        STEP,
        "bind trx",
        trx.client.bind_transceiver(transceiver("c", "z")),
    )
    .await
    .expect("trx");

    let kinds: Vec<_> = sim.stats().sessions.iter().map(|s| s.bind).collect();
    assert_eq!(
        kinds,
        vec![
            Some(BindKind::Transmitter),
            Some(BindKind::Receiver),
            Some(BindKind::Transceiver)
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn refuse_binds_answers_esme_rbindfail_until_it_is_lifted() {
    let sim = start(quick()).await;
    sim.set_refuse_binds(true);
    let esme = connect(&sim).await;

    let refused = within(
        STEP,
        "bind",
        esme.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await;
    assert_eq!(error_status(refused), CommandStatus::EsmeRbindfail);

    sim.set_refuse_binds(false);
    within(
        STEP,
        "bind again",
        esme.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await
    .expect("bind accepted once refusal is lifted");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_second_bind_on_the_same_connection_is_refused_with_esme_ralybnd() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;

    let again = within(
        STEP,
        "bind again",
        esme.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await;

    assert_eq!(error_status(again), CommandStatus::EsmeRalybnd);
    sim.shutdown().await;
}

#[tokio::test]
async fn submit_sm_before_bind_is_refused_with_esme_rinvbndsts() {
    let sim = start(quick()).await;
    let esme = connect(&sim).await;

    let result = within(
        STEP,
        "submit",
        esme.client.submit_sm(submit("4915", "hi", 0)),
    )
    .await;

    assert_eq!(error_status(result), CommandStatus::EsmeRinvbndsts);
    assert_eq!(sim.stats().submits, 0);
    assert_eq!(sim.stats().rejected, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn submit_sm_on_a_receiver_bind_is_refused_with_esme_rinvbndsts() {
    let sim = start(quick()).await;
    let esme = connect(&sim).await;
    within(
        STEP,
        "bind rx",
        esme.client.bind_receiver(receiver("acme", "pw")),
    )
    .await
    .expect("rx");

    let result = within(
        STEP,
        "submit",
        esme.client.submit_sm(submit("4915", "hi", 0)),
    )
    .await;

    assert_eq!(error_status(result), CommandStatus::EsmeRinvbndsts);
    sim.shutdown().await;
}

#[tokio::test]
async fn enquire_link_is_answered_before_and_after_bind() {
    let sim = start(quick()).await;
    let esme = connect(&sim).await;

    within(STEP, "enquire_link unbound", esme.client.enquire_link())
        .await
        .expect("answered");
    within(
        STEP,
        "bind",
        esme.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await
    .expect("bind");
    within(STEP, "enquire_link bound", esme.client.enquire_link())
        .await
        .expect("answered");
    sim.shutdown().await;
}

#[tokio::test]
async fn unbind_is_answered_and_then_the_connection_closes() {
    let sim = start(quick()).await;
    let esme = bound_transceiver(&sim, "acme").await;

    within(STEP, "unbind", esme.client.unbind())
        .await
        .expect("unbind_resp");

    within(STEP, "connection closed", esme.client.closed()).await;
    eventually(STEP, "simulator forgot the session", || {
        sim.stats().connections == 0
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unbind_before_bind_is_answered_with_esme_rinvbndsts() {
    let sim = start(quick()).await;
    let esme = connect(&sim).await;

    let result = within(STEP, "unbind", esme.client.unbind()).await;

    assert_eq!(error_status(result), CommandStatus::EsmeRinvbndsts);
    within(
        STEP,
        "bind after",
        esme.client.bind_transceiver(transceiver("acme", "pw")),
    )
    .await
    .expect("the connection is still usable");
    sim.shutdown().await;
}
